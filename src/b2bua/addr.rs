//! Reading the numbers of a call out of SIP URIs.

use crate::phone::E164;

/// The user part of the first SIP URI in a header value or Request-URI:
/// `"Bob" <sip:+821012345678@host;user=phone>;tag=1` → `+821012345678`.
pub fn uri_user(value: &str) -> Option<&str> {
    let start = value
        .find("sip:")
        .map(|i| i + 4)
        .or_else(|| value.find("sips:").map(|i| i + 5))?;
    let rest = &value[start..];
    let at = rest.find('@')?;
    let user = &rest[..at];
    // A user part stops at its own parameters (`;phone-context=…`).
    let user = user.split(';').next().unwrap_or(user);
    (!user.is_empty() && !user.contains(['>', ' ', '<'])).then_some(user)
}

/// A number from a URI user part: `+8210…` as is, bare digits (carriers
/// often leave out the `+`) taken as E.164 with the country code.
pub fn user_number(user: &str) -> Option<E164> {
    let user = user.trim();
    if user.starts_with('+') {
        return E164::parse(user).ok();
    }
    if !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()) {
        return E164::parse(&format!("+{user}")).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_from_uris() {
        assert_eq!(
            uri_user("\"Bob\" <sip:+821012345678@10.0.0.1;user=phone>;tag=1"),
            Some("+821012345678")
        );
        assert_eq!(
            uri_user("sip:821012345678;phone-context=x@h"),
            Some("821012345678")
        );
        assert_eq!(uri_user("<sip:h.example>"), None);
        assert_eq!(uri_user("tel:+8210"), None);
        assert_eq!(
            user_number("821012345678").unwrap().as_str(),
            "+821012345678"
        );
        assert_eq!(user_number("+82 10").map(|n| n.as_str().to_owned()), None);
        assert!(user_number("alice").is_none());
    }
}
