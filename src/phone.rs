//! E.164 phone numbers: parsing, normalisation and masking.
//!
//! Real phone numbers are personal data. [`E164`]'s `Display` and `Debug`
//! both print the **masked** form (`+8210****5678`), so a number that ends
//! up in a log line, an error message or a `{:?}` is masked by default. The
//! full number is only reachable through [`E164::as_str`], which code calls
//! on purpose (SQL parameters, JSON for the provisioning client, SIP URIs).

use std::fmt;

pub mod plan;
pub use plan::{NumberFormat, NumberPlan};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number in E.164 form: `+` then 1–15 digits, the first not `0`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing but separators.
    #[error("is empty")]
    Empty,
    /// E.164 numbers start with `+` and a country code.
    #[error("must start with '+' and a country code (E.164), e.g. +821012345678")]
    MissingPlus,
    /// A character that is neither a digit nor an accepted separator.
    #[error("contains '{0}', which is not a digit")]
    BadCharacter(char),
    /// Country codes never start with 0.
    #[error("country code cannot start with 0")]
    LeadingZero,
    /// E.164 allows at most 15 digits.
    #[error("has {0} digits; E.164 allows 15 at most")]
    TooLong(usize),
    /// Too short to be a routable number.
    #[error("has {0} digits; at least 7 are needed")]
    TooShort(usize),
}

/// Separators people put in numbers; they carry no meaning and are dropped.
const SEPARATORS: [char; 5] = [' ', '-', '.', '(', ')'];

impl E164 {
    /// Parses and normalises a number written by a person or a program.
    ///
    /// Spaces, dashes, dots and parentheses are dropped, and a national
    /// trunk prefix written as `(0)` after the country code (`+82 (0)10 …`)
    /// is removed. `00` as an international prefix is accepted as `+`.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let without_trunk = input.trim().replacen("(0)", "", 1);
        let compact: String = without_trunk
            .chars()
            .filter(|c| !SEPARATORS.contains(c))
            .collect();
        let digits = if let Some(rest) = compact.strip_prefix('+') {
            rest
        } else if let Some(rest) = compact.strip_prefix("00") {
            rest
        } else if compact.is_empty() {
            return Err(PhoneError::Empty);
        } else {
            return Err(PhoneError::MissingPlus);
        };
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(PhoneError::BadCharacter(bad));
        }
        match digits.len() {
            0 => Err(PhoneError::Empty),
            n if n > 15 => Err(PhoneError::TooLong(n)),
            n if n < 7 => Err(PhoneError::TooShort(n)),
            _ if digits.starts_with('0') => Err(PhoneError::LeadingZero),
            _ => Ok(E164(format!("+{digits}"))),
        }
    }

    /// The full number, `+` and digits. Personal data: do not log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form used in logs and errors: `+8210****5678`.
    ///
    /// At most a third of the digits is shown at each end (four at most),
    /// and the hidden part is always four stars whatever its length, so the
    /// mask does not reveal how long the number is either.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let keep = (digits.len() / 3).min(4);
        let head = &digits[..keep];
        let tail = &digits[digits.len() - keep..];
        format!("+{head}****{tail}")
    }
}

impl fmt::Display for E164 {
    /// Masked, so that `{}` in a log line never leaks a number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.masked())
    }
}

impl std::str::FromStr for E164 {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl utoipa::PartialSchema for E164 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\+[1-9][0-9]{6,14}$"))
            .description(Some("an E.164 phone number"))
            .into()
    }
}

impl utoipa::ToSchema for E164 {}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        E164::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The prefix of a stored pseudonym: `h:` then 64 hex digits.
pub const PSEUDONYM_PREFIX: &str = "h:";

/// A party's number as the database holds it: the real number, or, once
/// the personal-data retention period has passed, its pseudonym `h:<hex>`
/// (a keyed PRF of the number under the pseudonym key, which lives in the
/// key store). The same number always gets the same pseudonym, so records
/// still group by party; nobody can tell the number from it without the key.
///
/// Serialises as the stored text (the full number, or the pseudonym);
/// `Display` and `Debug` mask a real number like [`E164`] does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PartyNumber {
    /// The real number (the row is within its retention period).
    Real(E164),
    /// `h:` and 64 lowercase hex digits.
    Pseudonym(String),
}

impl PartyNumber {
    /// Reads a stored value: a pseudonym if it has the pseudonym form,
    /// otherwise an E.164 number.
    pub fn parse_stored(raw: &str) -> Result<PartyNumber, PhoneError> {
        if is_pseudonym(raw) {
            return Ok(PartyNumber::Pseudonym(raw.to_owned()));
        }
        E164::parse(raw).map(PartyNumber::Real)
    }

    /// The real number, unless the row has been pseudonymised.
    pub fn real(&self) -> Option<&E164> {
        match self {
            PartyNumber::Real(n) => Some(n),
            PartyNumber::Pseudonym(_) => None,
        }
    }

    /// Whether this is a pseudonym.
    pub fn is_pseudonym(&self) -> bool {
        matches!(self, PartyNumber::Pseudonym(_))
    }

    /// The stored text: the full number (personal data: do not log it) or
    /// the pseudonym.
    pub fn as_str(&self) -> &str {
        match self {
            PartyNumber::Real(n) => n.as_str(),
            PartyNumber::Pseudonym(p) => p,
        }
    }
}

/// The pseudonym text of a keyed hash (a MAC of a number): `h:<hex>`.
pub fn pseudonym_of_mac(mac: &[u8; 32]) -> String {
    format!("{PSEUDONYM_PREFIX}{}", hex::encode(mac))
}

/// Whether `raw` has the form of a pseudonym: `h:` and 64 lowercase hex digits.
pub fn is_pseudonym(raw: &str) -> bool {
    raw.strip_prefix(PSEUDONYM_PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl From<E164> for PartyNumber {
    fn from(n: E164) -> Self {
        PartyNumber::Real(n)
    }
}

impl PartialEq<E164> for PartyNumber {
    fn eq(&self, other: &E164) -> bool {
        self.real() == Some(other)
    }
}

impl fmt::Display for PartyNumber {
    /// A real number masked; a pseudonym as it is (it identifies nobody).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyNumber::Real(n) => fmt::Display::fmt(n, f),
            PartyNumber::Pseudonym(p) => f.write_str(p),
        }
    }
}

impl fmt::Debug for PartyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyNumber::Real(n) => fmt::Debug::fmt(n, f),
            PartyNumber::Pseudonym(p) => write!(f, "Pseudonym({p})"),
        }
    }
}

impl utoipa::PartialSchema for PartyNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "a real E.164 number, or its pseudonym h:… after the personal-data retention period",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PartyNumber {}

impl Serialize for PartyNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Masks whatever looks like a phone number in free text.
///
/// The last line of defence for log output whose fields were not typed as
/// [`E164`]: the logging layer passes every formatted line through it. A
/// number is a run of at least 7 digits, optionally led by `+` or its URL
/// encoding `%2B`, in which single `-` or spaces may separate groups of
/// digits, as people write them (`010-1234-5678`, `+82 10 1234 5678`,
/// `%2B821012345678`). Without a leading `+`, every group after the first
/// must have at least 3 digits, so dates (`2026-12-01`) and clock times are
/// left alone; dots never separate, so IP addresses are kept too. A run
/// glued to a word (an id like `ses_0192…`) is not a number.
pub fn mask_digits_in(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let prev_is_word = i > 0 && bytes[i - 1].is_ascii_alphanumeric();
        match phone_like(bytes, i) {
            Some((prefix, end, digits)) if !prev_is_word => {
                out.push_str(&text[copied..i]);
                out.push_str(if prefix > 0 { "+" } else { "" });
                let keep = (digits.len() / 3).min(4);
                out.push_str(&digits[..keep]);
                out.push_str("****");
                out.push_str(&digits[digits.len() - keep..]);
                copied = end;
                i = end;
            }
            _ => {
                // Skip a whole run of digits, so its tail is not a new start.
                let mut j = i + 1;
                while bytes.get(i).is_some_and(u8::is_ascii_digit)
                    && bytes.get(j).is_some_and(u8::is_ascii_digit)
                {
                    j += 1;
                }
                i = j;
            }
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// A phone-like run starting at `i`: (length of its `+`/`%2B` prefix, the
/// index just past it, its digits).
fn phone_like(bytes: &[u8], i: usize) -> Option<(usize, usize, String)> {
    let prefix = match bytes.get(i..) {
        Some([b'+', ..]) => 1,
        Some([b'%', b'2', b'B' | b'b', ..]) => 3,
        _ => 0,
    };
    let mut j = i + prefix;
    let mut digits = String::new();
    let mut groups = Vec::new();
    loop {
        let start = j;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            digits.push(char::from(bytes[j]));
            j += 1;
        }
        groups.push(j - start);
        // A single separator followed by a digit continues the number.
        let sep = bytes.get(j).is_some_and(|&b| b == b'-' || b == b' ');
        if j > start && sep && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    let grouped_like_a_number = prefix > 0 || groups.iter().skip(1).all(|&g| g >= 3);
    (digits.len() >= 7 && grouped_like_a_number).then_some((prefix, j, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_separators_and_prefixes() {
        for raw in [
            "+821012345678",
            "+82 10-1234-5678",
            "+82 (0)10 1234 5678",
            "0082 10.1234.5678",
            " +82(10)12345678 ",
        ] {
            assert_eq!(E164::parse(raw).unwrap().as_str(), "+821012345678", "{raw}");
        }
    }

    #[test]
    fn rejects_what_is_not_e164() {
        assert_eq!(E164::parse(""), Err(PhoneError::Empty));
        assert_eq!(E164::parse(" - "), Err(PhoneError::Empty));
        assert_eq!(E164::parse("01012345678"), Err(PhoneError::MissingPlus));
        assert_eq!(
            E164::parse("+8210abc5678"),
            Err(PhoneError::BadCharacter('a'))
        );
        assert_eq!(E164::parse("+0821012345"), Err(PhoneError::LeadingZero));
        assert_eq!(
            E164::parse("+1234567890123456"),
            Err(PhoneError::TooLong(16))
        );
        assert_eq!(E164::parse("+12345"), Err(PhoneError::TooShort(5)));
    }

    #[test]
    fn display_and_debug_are_masked() {
        let n = E164::parse("+821012345678").unwrap();
        assert_eq!(n.to_string(), "+8210****5678");
        assert_eq!(format!("{n:?}"), "E164(+8210****5678)");
        assert!(!format!("{n} {n:?}").contains("12345678"));
        let short = E164::parse("+1234567").unwrap();
        assert_eq!(short.masked(), "+12****67");
    }

    #[test]
    fn serde_round_trip_keeps_the_full_number() {
        let n = E164::parse("+821012345678").unwrap();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"+821012345678\"");
        let back: E164 = serde_json::from_str("\"+82 10 1234 5678\"").unwrap();
        assert_eq!(back, n);
        assert!(serde_json::from_str::<E164>("\"12\"").is_err());
    }

    #[test]
    fn masks_digit_runs_in_free_text() {
        assert_eq!(
            mask_digits_in("call from +821012345678 to 01098765432 ok"),
            "call from +8210****5678 to 010****432 ok"
        );
        assert_eq!(mask_digits_in("port 5060 id 123456"), "port 5060 id 123456");
        assert_eq!(mask_digits_in("ses_0192abc1234567"), "ses_0192abc1234567");
        for (text, masked) in [
            ("from 010-1234-5678.", "from 010****678."),
            ("caller=%2B821012345678&x", "caller=+8210****5678&x"),
            ("to %2b821012345678", "to +8210****5678"),
            ("+82 10-1234-5678 rang", "+8210****5678 rang"),
            ("dial 02 123 4567", "dial 021****567"),
        ] {
            assert_eq!(mask_digits_in(text), masked, "{text}");
        }
        // Dates, times, addresses and short numbers stay readable.
        for kept in [
            "2026-12-01T20:12:01.123Z",
            "at 2026-12-01 20:12",
            "remote=192.168.100.200:5060",
            "port 5060 and 12 345",
        ] {
            assert_eq!(mask_digits_in(kept), kept);
        }
    }

    #[test]
    fn party_numbers_read_back_real_or_pseudonym() {
        let real = PartyNumber::parse_stored("+821012345678").unwrap();
        assert_eq!(real, E164::parse("+821012345678").unwrap());
        assert_eq!(real.to_string(), "+8210****5678");
        assert_eq!(format!("{real:?}"), "E164(+8210****5678)");
        let p = PartyNumber::parse_stored(&pseudonym_of_mac(&[0xab; 32])).unwrap();
        assert!(p.is_pseudonym() && p.real().is_none());
        assert_eq!(p.as_str(), format!("h:{}", "ab".repeat(32)));
        assert_eq!(PartyNumber::parse_stored(p.as_str()).unwrap(), p);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            format!("\"h:{}\"", "ab".repeat(32))
        );
        assert_eq!(serde_json::to_string(&real).unwrap(), "\"+821012345678\"");
        for bad in ["h:", "h:abc", &format!("h:{}", "AB".repeat(32)), "x"] {
            assert!(PartyNumber::parse_stored(bad).is_err(), "{bad}");
        }
    }
}
