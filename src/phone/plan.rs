//! How a trunk writes numbers: E.164 (`+8210…`, or its digits without
//! the `+`) or national (`010…` for a number of the trunk's country).
//! [`NumberPlan::read`] turns what a trunk sent into an [`E164`],
//! [`NumberPlan::write`] writes an [`E164`] the way the trunk expects it.

use super::E164;

/// The number format of a trunk (`[trunk] number_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NumberFormat {
    /// `+` and the country code; digits without the `+` are read as such.
    #[default]
    E164,
    /// The trunk's own country's numbers with their trunk prefix `0`.
    National,
}

/// A trunk's number format and country (`[trunk] number_format`,
/// `country`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NumberPlan {
    /// How the trunk writes numbers.
    pub format: NumberFormat,
    /// The trunk's country code, digits only (`"82"`); required for
    /// [`NumberFormat::National`]. With it, an E.164 trunk's national
    /// numbers (`0…`) are read too.
    pub country: Option<String>,
}

impl NumberPlan {
    /// The number in a URI user part or a `tel:` number, read the trunk's
    /// way: `+8210…` as it is, `0…` as a national number of the trunk's
    /// country (`+82` and the digits after the `0`), `00…` as
    /// international, other digits as E.164 without the `+`. Visual
    /// separators (`-`, `.`, `(`, `)`) are dropped; anything else that is
    /// not a digit makes it no number.
    pub fn read(&self, user: &str) -> Option<E164> {
        let compact: String = user
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if compact.starts_with('+') || compact.starts_with("00") {
            return E164::parse(&compact).ok();
        }
        if let (Some(national), Some(country)) = (compact.strip_prefix('0'), &self.country) {
            return E164::parse(&format!("+{country}{national}")).ok();
        }
        E164::parse(&format!("+{compact}")).ok()
    }

    /// `number` as the trunk writes it: national (`0` and the digits after
    /// the country code) for a number of a national trunk's country,
    /// E.164 otherwise. Personal data: the text is the real number.
    pub fn write(&self, number: &E164) -> String {
        let national = match (self.format, &self.country) {
            (NumberFormat::National, Some(country)) => number
                .as_str()
                .strip_prefix('+')
                .and_then(|d| d.strip_prefix(country.as_str()))
                .filter(|rest| !rest.is_empty()),
            _ => None,
        };
        match national {
            Some(rest) => format!("0{rest}"),
            None => number.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn korean(format: NumberFormat) -> NumberPlan {
        NumberPlan {
            format,
            country: Some("82".into()),
        }
    }

    fn read(plan: &NumberPlan, user: &str) -> Option<String> {
        plan.read(user).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn national_numbers_get_the_country_code() {
        let plan = korean(NumberFormat::National);
        assert_eq!(read(&plan, "01055556666").as_deref(), Some("+821055556666"));
        assert_eq!(read(&plan, "05041239001").as_deref(), Some("+825041239001"));
        assert_eq!(
            read(&plan, "010-5555-6666").as_deref(),
            Some("+821055556666")
        );
        assert_eq!(
            read(&plan, "+821055556666").as_deref(),
            Some("+821055556666")
        );
        assert_eq!(
            read(&plan, "0015551234567").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            read(&plan, "821055556666").as_deref(),
            Some("+821055556666")
        );
    }

    #[test]
    fn e164_trunks_read_bare_digits_as_international() {
        let plain = NumberPlan::default();
        assert_eq!(
            read(&plain, "821055556666").as_deref(),
            Some("+821055556666")
        );
        assert_eq!(
            read(&plain, "+821055556666").as_deref(),
            Some("+821055556666")
        );
        assert_eq!(
            read(&plain, "01055556666"),
            None,
            "no country to read 0… with"
        );
        let with_country = korean(NumberFormat::E164);
        assert_eq!(
            read(&with_country, "01055556666").as_deref(),
            Some("+821055556666")
        );
    }

    #[test]
    fn what_is_not_a_number_is_none() {
        let plan = korean(NumberFormat::National);
        for user in [
            "",
            "anonymous",
            "+",
            "0",
            "+82 10 x",
            "010*5555",
            "+0821055556666",
        ] {
            assert_eq!(read(&plan, user), None, "{user:?}");
        }
    }

    #[test]
    fn numbers_are_written_in_the_trunks_format() {
        let n = E164::parse("+821055556666").unwrap();
        let foreign = E164::parse("+15551234567").unwrap();
        let national = korean(NumberFormat::National);
        assert_eq!(national.write(&n), "01055556666");
        assert_eq!(national.write(&foreign), "+15551234567");
        assert_eq!(korean(NumberFormat::E164).write(&n), "+821055556666");
        assert_eq!(NumberPlan::default().write(&n), "+821055556666");
    }
}
