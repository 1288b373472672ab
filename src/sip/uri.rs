//! Reading the number out of a SIP or `tel:` URI, and the `tel:`
//! Request-URI rsip cannot parse.
//!
//! rsip fails on every `tel:` URI (`docs/CRATES.md`), so a `tel:`
//! Request-URI is rewritten before rsip sees the message
//! ([`normalise_request_uri`]) into the SIP form RFC 3261 §19.1.6 gives
//! for it, `sip:+number@tel.invalid;user=phone`; in header values
//! (`From`, `P-Asserted-Identity`, …) rsip keeps the text as it came and
//! [`header_uri`] reads it.

use std::borrow::Cow;

/// The host a `tel:` Request-URI gets when rewritten as a SIP URI.
pub const TEL_HOST: &str = "tel.invalid";

/// The number-bearing parts of one URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriNumber<'a> {
    /// The user part of a SIP URI (without user parameters), or the number
    /// of a `tel:` URI (visual separators still in it).
    pub user: &'a str,
    /// A `tel:` URI, or a SIP URI with `user=phone`: the user is a
    /// telephone number by the sender's word.
    pub phone: bool,
    /// The anonymous form RFC 3323 §4.1.1.3 gives (`anonymous@…`, or a host
    /// `anonymous.invalid`).
    pub anonymous: bool,
}

/// The URI of a header value (`"Bob" <sip:+8210…@h;user=phone>;tag=1`,
/// `<tel:+8210…>`, `sip:alice@h;tag=1`) read for its number; `None` for
/// a scheme other than `sip:`, `sips:` or `tel:`.
pub fn header_uri(value: &str) -> Option<UriNumber<'_>> {
    let addr_spec = match value.find('<') {
        Some(open) => {
            let rest = value.get(open + 1..)?;
            rest.get(..rest.find('>')?)?
        }
        // Without angle brackets, a `;` starts the header's parameters.
        None => value.trim().split(';').next().unwrap_or_default(),
    };
    uri_number(addr_spec.trim())
}

/// A URI (a Request-URI, or the addr-spec of a header) read for its number.
pub fn uri_number(uri: &str) -> Option<UriNumber<'_>> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or_default();
        return Some(UriNumber {
            user: number,
            phone: true,
            anonymous: false,
        });
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let rest = rest.split('?').next().unwrap_or_default();
    let (user, host_params) = match rest.rsplit_once('@') {
        Some((user, host)) => (user, host),
        None => ("", rest),
    };
    // A user part stops at its own parameters (`;phone-context=…`).
    let user = user.split(';').next().unwrap_or_default();
    let mut parts = host_params.split(';');
    let host = parts.next().unwrap_or_default();
    let phone = parts.any(|p| p.trim().eq_ignore_ascii_case("user=phone"));
    let anonymous =
        user.eq_ignore_ascii_case("anonymous") || host.eq_ignore_ascii_case("anonymous.invalid");
    Some(UriNumber {
        user,
        phone,
        anonymous,
    })
}

/// A `tel:` number without its visual separators (RFC 3966 §5.1.1), if
/// what is left is `+` and digits, or digits (a local number).
pub fn tel_digits(number: &str) -> Option<String> {
    let compact: String = number
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(compact)
}

/// A `tel:` Request-URI rewritten as the SIP URI rsip can read
/// (`tel:+82-10-5555-6666` → `sip:+821055556666@tel.invalid;user=phone`).
/// Any other URI, or a `tel:` number that is not digits, is returned
/// unchanged.
pub fn normalise_request_uri(uri: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Cow::Borrowed(uri);
    };
    if !scheme.eq_ignore_ascii_case("tel") {
        return Cow::Borrowed(uri);
    }
    let number = rest.split(';').next().unwrap_or_default();
    match tel_digits(number) {
        Some(digits) => Cow::Owned(format!("sip:{digits}@{TEL_HOST};user=phone")),
        None => Cow::Borrowed(uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sip_and_tel_uris_in_header_values() {
        let n = header_uri("\"Bob\" <sip:+821012345678@10.0.0.1;user=phone>;tag=1").unwrap();
        assert_eq!(
            (n.user, n.phone, n.anonymous),
            ("+821012345678", true, false)
        );
        let n = header_uri("<tel:+82-10-5555-6666;phone-context=x>").unwrap();
        assert_eq!((n.user, n.phone), ("+82-10-5555-6666", true));
        let n = header_uri("sip:01055556666@carrier;tag=9").unwrap();
        assert_eq!((n.user, n.phone), ("01055556666", false));
        let n = header_uri("<sip:821012345678;phone-context=x@h>").unwrap();
        assert_eq!(n.user, "821012345678");
        let n = header_uri("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1").unwrap();
        assert!(n.anonymous);
        let n = header_uri("<sip:+8210@anonymous.invalid>").unwrap();
        assert!(n.anonymous, "the host alone says anonymous");
        assert_eq!(header_uri("<sip:h.example>").unwrap().user, "");
        assert!(header_uri("<mailto:a@b>").is_none());
        assert!(header_uri("<sip:a@b").is_none(), "an unclosed bracket");
        assert!(header_uri("").is_none());
    }

    #[test]
    fn tel_numbers_lose_visual_separators() {
        assert_eq!(
            tel_digits("+82-10-5555.6666").as_deref(),
            Some("+821055556666")
        );
        assert_eq!(tel_digits("(02)1234-5678").as_deref(), Some("0212345678"));
        assert_eq!(tel_digits("+82*10"), None);
        assert_eq!(tel_digits("+"), None);
    }

    #[test]
    fn a_tel_request_uri_is_rewritten_for_rsip() {
        assert_eq!(
            normalise_request_uri("tel:+82-50-4123-9001;x=y"),
            "sip:+825041239001@tel.invalid;user=phone"
        );
        let sip = "sip:+825041239001@h";
        assert!(matches!(normalise_request_uri(sip), Cow::Borrowed(_)));
        assert_eq!(normalise_request_uri("tel:call-me"), "tel:call-me");
    }
}
