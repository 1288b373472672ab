//! The numbers of a call as a trunk sends them: the caller from the first
//! `P-Asserted-Identity` that is a telephone number (`tel:`, or `sip:`
//! with `user=phone`), else from `From` unless it is anonymous; the
//! dialled number from the Request-URI. Both are read in the source
//! trunk's [`NumberPlan`].
//!
//! Only trunk sources reach the switch (the transports answer or drop
//! everyone else before parsing), so an asserted identity is believed
//! exactly when a trunk sent it. Nothing read here is copied to the
//! B-leg: its `From` is the proxy number and it carries no identity
//! headers (`message::RELAYED`), whatever `Privacy` asked for.

use rsip::Headers;

use super::message::header_list;
use crate::phone::{E164, NumberPlan};
use crate::sip::headers::core_values;
use crate::sip::uri::{header_uri, uri_number};

/// The caller's number: the first usable `P-Asserted-Identity`, then the
/// `From` user; `None` when neither holds a number (an anonymous `From`
/// and no asserted identity).
pub(super) fn caller_number(headers: &Headers, plan: &NumberPlan) -> Option<E164> {
    let asserted = header_list(headers, "P-Asserted-Identity")
        .iter()
        .filter_map(|value| {
            let uri = header_uri(value)?;
            (uri.phone && !uri.anonymous).then(|| plan.read(uri.user))?
        })
        .next();
    asserted.or_else(|| {
        let uri = header_uri(core_values(headers).from?)?;
        if uri.anonymous {
            return None;
        }
        plan.read(uri.user)
    })
}

/// The dialled number: the Request-URI's user (a `tel:` Request-URI has
/// been rewritten as `sip:…;user=phone` by the parser).
pub(super) fn dialled_number(request_uri: &str, plan: &NumberPlan) -> Option<E164> {
    plan.read(uri_number(request_uri)?.user)
}

#[cfg(test)]
mod tests {
    use rsip::headers::UntypedHeader;
    use rsip::{Header, Headers};

    use super::*;
    use crate::phone::NumberFormat;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (name, value) in lines {
            h.push(match *name {
                "From" => Header::From(rsip::headers::From::new(*value)),
                _ => Header::Other((*name).into(), (*value).into()),
            });
        }
        h
    }

    fn korean() -> NumberPlan {
        NumberPlan {
            format: NumberFormat::National,
            country: Some("82".into()),
        }
    }

    fn caller(lines: &[(&str, &str)], plan: &NumberPlan) -> Option<String> {
        caller_number(&headers(lines), plan).map(|n| n.as_str().to_owned())
    }

    const ANONYMOUS: (&str, &str) = (
        "From",
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=a1",
    );

    #[test]
    fn a_tel_pai_is_the_caller_behind_an_anonymous_from() {
        let lines = [
            ANONYMOUS,
            ("Privacy", "id"),
            ("P-Asserted-Identity", "<tel:+82-10-5555-6666>"),
        ];
        assert_eq!(
            caller(&lines, &NumberPlan::default()).as_deref(),
            Some("+821055556666")
        );
    }

    #[test]
    fn the_first_phone_pai_wins_over_from() {
        let lines = [
            ("From", "<sip:01011112222@carrier>;tag=1"),
            (
                "P-Asserted-Identity",
                "<sip:alice@carrier>, <sip:01055556666@carrier;user=phone>",
            ),
            ("P-Asserted-Identity", "<tel:01099998888>"),
        ];
        assert_eq!(caller(&lines, &korean()).as_deref(), Some("+821055556666"));
    }

    #[test]
    fn a_sip_pai_without_user_phone_is_not_a_number() {
        let lines = [
            ("From", "<sip:01011112222@carrier>;tag=1"),
            ("P-Asserted-Identity", "<sip:01055556666@carrier>"),
        ];
        assert_eq!(caller(&lines, &korean()).as_deref(), Some("+821011112222"));
    }

    #[test]
    fn a_tel_from_is_a_number_too() {
        let lines = [("From", "<tel:010-5555-6666>;tag=1")];
        assert_eq!(caller(&lines, &korean()).as_deref(), Some("+821055556666"));
    }

    #[test]
    fn national_from_needs_the_trunks_country() {
        let lines = [("From", "<sip:01055556666@carrier>;tag=1")];
        assert_eq!(caller(&lines, &korean()).as_deref(), Some("+821055556666"));
        assert_eq!(caller(&lines, &NumberPlan::default()), None);
    }

    #[test]
    fn no_number_at_all() {
        assert_eq!(caller(&[ANONYMOUS, ("Privacy", "id")], &korean()), None);
        let anonymous_pai = [
            ANONYMOUS,
            (
                "P-Asserted-Identity",
                "<sip:anonymous@anonymous.invalid;user=phone>",
            ),
        ];
        assert_eq!(caller(&anonymous_pai, &korean()), None);
        assert_eq!(caller(&[("From", "<sip:alice@h>;tag=1")], &korean()), None);
        assert_eq!(caller(&[], &korean()), None);
    }

    #[test]
    fn dialled_numbers_in_every_form() {
        let read =
            |uri: &str, plan: &NumberPlan| dialled_number(uri, plan).map(|n| n.as_str().to_owned());
        let k = korean();
        assert_eq!(
            read("sip:05041239001@ansim", &k).as_deref(),
            Some("+825041239001")
        );
        assert_eq!(
            read("sip:+825041239001@tel.invalid;user=phone", &k).as_deref(),
            Some("+825041239001")
        );
        assert_eq!(
            read("tel:0504-123-9001", &k).as_deref(),
            Some("+825041239001")
        );
        assert_eq!(
            read("sip:825041239001@h", &NumberPlan::default()).as_deref(),
            Some("+825041239001")
        );
        assert_eq!(read("sip:ansim.local", &k), None);
        assert_eq!(read("sip:bob@h", &k), None);
    }
}
