//! Human-readable durations: `"30d"`, `"1h30m"`, `"500ms"`.
//!
//! Grammar: one or more `<digits><unit>` groups with no spaces, units
//! `w` (7 days), `d`, `h`, `m`, `s`, `ms`, larger units first and each at
//! most once (`"1d12h"` is valid, `"12h1d"` and `"1h1h"` are not). `"0s"` is
//! the zero duration. Signs, fractions and bare numbers are rejected.

use std::time::Duration;

/// Units accepted by [`parse_duration`], largest first (order is enforced).
const UNITS: &[(&str, Unit)] = &[
    ("w", Unit::Secs(7 * 86_400)),
    ("d", Unit::Secs(86_400)),
    ("h", Unit::Secs(3_600)),
    ("m", Unit::Secs(60)),
    ("s", Unit::Secs(1)),
    ("ms", Unit::Millis),
];

/// Hint listing the accepted units, used in error messages.
const UNIT_HINT: &str = "expected one of ms, s, m, h, d, w";

#[derive(Debug, Clone, Copy)]
enum Unit {
    Secs(u64),
    Millis,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration (write e.g. \"30s\", \"1h30m\" or \"7d\")")]
    Empty,
    /// The string starts with `-`.
    #[error("negative durations are not allowed")]
    Negative,
    /// A number had no unit after it (e.g. `"30"`).
    #[error("missing unit after '{number}' ({UNIT_HINT})")]
    MissingUnit {
        /// The number that lacked a unit.
        number: String,
    },
    /// A unit that is not one of ms/s/m/h/d/w.
    #[error("unknown unit '{unit}' ({UNIT_HINT})")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// A unit that repeats or comes after a smaller one (`"1m1h"`).
    #[error("unit '{unit}' is repeated or out of order (write larger units first, each once)")]
    UnitOrder {
        /// The offending unit.
        unit: String,
    },
    /// A decimal point (`"1.5h"`).
    #[error("fractional values are not supported (write \"1h30m\" instead of \"1.5h\")")]
    Fractional,
    /// A character where a number was expected.
    #[error("expected a number at byte {position}, found '{found}'")]
    ExpectedNumber {
        /// Byte offset in the input.
        position: usize,
        /// The character found there.
        found: char,
    },
    /// The value does not fit in a `Duration`.
    #[error("duration is too large")]
    Overflow,
}

/// Parses a duration such as `"30d"`, `"1h"`, `"500ms"` or `"1d12h"`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut total = Duration::ZERO;
    let mut next_unit = 0; // index into UNITS of the largest unit still allowed
    while pos < bytes.len() {
        let (number, after_number) = read_number(s, pos)?;
        let (unit_idx, after_unit) = read_unit(s, after_number)?;
        if unit_idx < next_unit {
            return Err(DurationError::UnitOrder {
                unit: UNITS[unit_idx].0.to_string(),
            });
        }
        next_unit = unit_idx + 1;
        let value: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        let part = scale(value, UNITS[unit_idx].1)?;
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
        pos = after_unit;
    }
    Ok(total)
}

/// Reads the digits starting at `pos`; returns them and the position after.
fn read_number(s: &str, pos: usize) -> Result<(&str, usize), DurationError> {
    let rest = &s[pos..];
    let len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        let found = rest.chars().next().unwrap_or(' ');
        return Err(DurationError::ExpectedNumber {
            position: pos,
            found,
        });
    }
    Ok((&rest[..len], pos + len))
}

/// Reads the unit letters starting at `pos`; returns the unit index and the
/// position after.
fn read_unit(s: &str, pos: usize) -> Result<(usize, usize), DurationError> {
    let rest = &s[pos..];
    let len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
    if len == 0 {
        if rest.starts_with('.') || rest.starts_with(',') {
            return Err(DurationError::Fractional);
        }
        if rest.is_empty() {
            let number = s[..pos]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or_default()
                .to_string();
            return Err(DurationError::MissingUnit { number });
        }
        let unit: String = rest.chars().take(1).collect();
        return Err(DurationError::UnknownUnit { unit });
    }
    let unit = &rest[..len];
    UNITS
        .iter()
        .position(|(name, _)| *name == unit)
        .map(|idx| (idx, pos + len))
        .ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
        })
}

/// Converts `value` units into a `Duration`, checking for overflow.
fn scale(value: u64, unit: Unit) -> Result<Duration, DurationError> {
    match unit {
        Unit::Millis => Ok(Duration::from_millis(value)),
        Unit::Secs(factor) => value
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or(DurationError::Overflow),
    }
}

/// Formats a duration in the canonical form accepted by [`parse_duration`]:
/// days, hours, minutes, seconds and milliseconds, largest first, zero parts
/// left out (`"7d"`, `"1h30m"`, `"1d12h"`, `"1s500ms"`, `"0s"`). Weeks are
/// never emitted, so `"365d"` stays readable. Sub-millisecond precision is
/// truncated (such values cannot round-trip; config values never have it).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 && millis == 0 {
        return "0s".to_string();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(millis), "ms"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_simple_units() {
        assert_eq!(parse_duration("30d"), Ok(secs(30 * 86_400)));
        assert_eq!(parse_duration("7d"), Ok(secs(7 * 86_400)));
        assert_eq!(parse_duration("1h"), Ok(secs(3_600)));
        assert_eq!(parse_duration("90m"), Ok(secs(5_400)));
        assert_eq!(parse_duration("45s"), Ok(secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2w"), Ok(secs(14 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_compound() {
        assert_eq!(parse_duration("1d12h"), Ok(secs(36 * 3_600)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5_400)));
        assert_eq!(
            parse_duration("1w1d1h1m1s1ms"),
            Ok(secs(8 * 86_400 + 3_661) + Duration::from_millis(1))
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit {
                number: "30".into()
            })
        );
        assert_eq!(
            parse_duration("1h30"),
            Err(DurationError::MissingUnit {
                number: "30".into()
            })
        );
        assert_eq!(
            parse_duration("5y"),
            Err(DurationError::UnknownUnit { unit: "y".into() })
        );
        assert_eq!(
            parse_duration("5 s"),
            Err(DurationError::UnknownUnit { unit: " ".into() })
        );
        assert_eq!(parse_duration("1.5h"), Err(DurationError::Fractional));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::ExpectedNumber { position: 0, .. })
        ));
        assert!(matches!(
            parse_duration("+5s"),
            Err(DurationError::ExpectedNumber { found: '+', .. })
        ));
        assert!(matches!(
            parse_duration("5sé"),
            Err(DurationError::ExpectedNumber { found: 'é', .. })
        ));
    }

    #[test]
    fn rejects_out_of_order_or_repeated_units() {
        assert_eq!(
            parse_duration("12h1d"),
            Err(DurationError::UnitOrder { unit: "d".into() })
        );
        assert_eq!(
            parse_duration("1h1h"),
            Err(DurationError::UnitOrder { unit: "h".into() })
        );
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(
            parse_duration("99999999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615w"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615s1ms"),
            Ok(Duration::new(u64::MAX, 1_000_000))
        );
        assert_eq!(
            parse_duration("18446744073709551615s1000ms"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let msg = parse_duration("30").unwrap_err().to_string();
        assert!(msg.contains("missing unit after '30'"), "{msg}");
        let msg = parse_duration("3y").unwrap_err().to_string();
        assert!(msg.contains("unknown unit 'y'"), "{msg}");
        assert!(msg.contains("ms, s, m, h, d, w"), "{msg}");
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(secs(7 * 86_400)), "7d");
        assert_eq!(format_duration(secs(5_400)), "1h30m");
        assert_eq!(format_duration(secs(36 * 3_600)), "1d12h");
        assert_eq!(format_duration(secs(1_095 * 86_400)), "1095d");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1ms");
    }

    #[test]
    fn format_round_trips() {
        for s in ["7d", "1h30m", "1d12h", "500ms", "30s", "1d1h1m1s1ms", "0s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        let max = Duration::new(u64::MAX, 999_000_000);
        assert_eq!(parse_duration(&format_duration(max)), Ok(max));
    }

    #[test]
    fn never_panics_on_short_strings() {
        let alphabet: Vec<char> = "09msdhw.-+ é".chars().collect();
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = inputs
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(longer);
        }
        for s in &inputs {
            if let Ok(d) = parse_duration(s) {
                assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s}");
            }
        }
    }
}
