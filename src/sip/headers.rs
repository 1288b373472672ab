//! Reading raw header values without rsip's typed parsers.
//!
//! rsip's typed headers fail on IPv6 hosts, `tel:` URIs and several other
//! valid inputs, and `typed()` on a comma-joined Via silently returns only
//! the first value. The transaction layer only needs a handful of fields
//! (Via branch and sent-by, CSeq, tags), so it reads them from the raw
//! header text with the small, total functions here.

use rsip::headers::UntypedHeader;
use rsip::{Header, Headers};

/// Splits a header value on top-level commas, ignoring commas inside
/// quoted strings and `<...>` URIs. Empty elements are dropped.
pub fn split_commas(value: &str) -> Vec<&str> {
    comma_parts(value).collect()
}

/// The elements [`split_commas`] returns, one at a time, without a `Vec`
/// (the top Via of every message is read this way).
pub fn comma_parts(value: &str) -> impl Iterator<Item = &str> {
    CommaParts { rest: Some(value) }.filter(|p| !p.is_empty())
}

/// What is left of a value being split by [`comma_parts`].
struct CommaParts<'a> {
    /// The text after the last comma cut, `None` once the end was reached.
    rest: Option<&'a str>,
}

impl<'a> Iterator for CommaParts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let value = self.rest?;
        let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
        // Bytes, not chars: every delimiter is ASCII, and no byte of a
        // multi-byte UTF-8 character is, so each cut is at a char boundary.
        for (i, c) in value.bytes().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                b'\\' if in_quotes => escaped = true,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => in_angle = true,
                b'>' if !in_quotes => in_angle = false,
                b',' if !in_quotes && !in_angle => {
                    self.rest = value.get(i + 1..);
                    return Some(value.get(..i).unwrap_or("").trim());
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(value.trim())
    }
}

/// Looks up `name` in a `;`-separated parameter list (`a=1;b;c=x`).
///
/// Returns `Some("")` for a flag parameter without value.
pub fn find_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The parts of one Via value that transactions care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaInfo<'a> {
    /// `SIP/2.0/UDP` and the like.
    pub protocol: &'a str,
    /// `host[:port]`, IPv6 references kept in brackets.
    pub sent_by: &'a str,
    /// The raw parameter list after the first `;`.
    pub params: &'a str,
}

impl<'a> ViaInfo<'a> {
    /// Parses a single Via value (`SIP/2.0/UDP host:port;branch=...`).
    pub fn parse(value: &'a str) -> Option<Self> {
        let value = value.trim();
        let (protocol, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        let rest = rest.trim_start();
        let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
        let sent_by = sent_by.trim();
        let valid = protocol.to_ascii_uppercase().starts_with("SIP/") && !sent_by.is_empty();
        valid.then_some(Self {
            protocol,
            sent_by,
            params,
        })
    }

    /// The `branch` parameter, if present and non-empty.
    pub fn branch(&self) -> Option<&'a str> {
        find_param(self.params, "branch").filter(|b| !b.is_empty())
    }
}

/// Returns the header parameters of a name-addr / addr-spec value
/// (From, To, Contact), i.e. what follows `>` or, without angle brackets,
/// the first `;` (RFC 3261 §20: there, URI parameters are header parameters).
pub fn header_params(value: &str) -> &str {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => return after_angle(value.get(i..).unwrap_or("")),
            ';' if !in_quotes => return value.get(i + 1..).unwrap_or(""),
            _ => {}
        }
    }
    ""
}

fn after_angle(from_angle: &str) -> &str {
    let Some(close) = from_angle.find('>') else {
        return "";
    };
    let tail = from_angle.get(close + 1..).unwrap_or("");
    tail.split_once(';').map_or("", |(_, params)| params)
}

/// The `tag` parameter of a From/To value, if present and non-empty.
pub fn tag_of(value: &str) -> Option<&str> {
    find_param(header_params(value), "tag").filter(|t| !t.is_empty())
}

/// Parses a CSeq value into its sequence number and method token.
pub fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let mut parts = value.split_ascii_whitespace();
    let number = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    parts.next().is_none().then_some((number, method))
}

/// True for characters allowed in an RFC 3261 `token`.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// True if `s` is a non-empty RFC 3261 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Expands an RFC 3261 §7.3.3 compact header name (and the compact forms
/// registered later) to its full name; other names come back unchanged.
pub fn expand_compact(name: &str) -> &str {
    let [letter] = name.as_bytes() else {
        return name;
    };
    match letter.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

/// The name and value of a header, whatever rsip parsed it as, borrowed
/// from it and untrimmed: exactly what rsip's `Display` writes as
/// `{name}: {value}`, without formatting it (rendering each header to
/// text to read its name cost a sixth of a call's CPU in
/// `benches/switch.rs`; serialising through `Display` a tenth).
pub fn wire_name_value(header: &Header) -> (&str, &str) {
    macro_rules! named {
        ($($variant:ident => $name:literal),* $(,)?) => {
            match header {
                $(Header::$variant(h) => ($name, h.value()),)*
                Header::Other(name, value) => (name.as_str(), value.as_str()),
            }
        };
    }
    let (name, value) = named!(
        Accept => "Accept", AcceptEncoding => "Accept-Encoding",
        AcceptLanguage => "Accept-Language", AlertInfo => "Alert-Info", Allow => "Allow",
        AuthenticationInfo => "Authentication-Info", Authorization => "Authorization",
        CSeq => "CSeq", CallId => "Call-ID", CallInfo => "Call-Info", Contact => "Contact",
        ContentDisposition => "Content-Disposition", ContentEncoding => "Content-Encoding",
        ContentLanguage => "Content-Language", ContentLength => "Content-Length",
        ContentType => "Content-Type", Date => "Date", ErrorInfo => "Error-Info",
        Event => "Event", Expires => "Expires", From => "From", InReplyTo => "In-Reply-To",
        MaxForwards => "Max-Forwards", MimeVersion => "Mime-Version",
        MinExpires => "Min-Expires", Organization => "Organization", Priority => "Priority",
        ProxyAuthenticate => "Proxy-Authenticate", ProxyAuthorization => "Proxy-Authorization",
        ProxyRequire => "Proxy-Require", RecordRoute => "Record-Route", ReplyTo => "Reply-To",
        Require => "Require", RetryAfter => "Retry-After", Route => "Route", Server => "Server",
        Subject => "Subject", SubscriptionState => "Subscription-State",
        Supported => "Supported", Timestamp => "Timestamp", To => "To",
        Unsupported => "Unsupported", UserAgent => "User-Agent", Via => "Via",
        Warning => "Warning", WwwAuthenticate => "WWW-Authenticate",
    );
    (name, value)
}

/// [`wire_name_value`] trimmed, for lookups by name.
pub fn name_value(header: &Header) -> (&str, &str) {
    let (name, value) = wire_name_value(header);
    (name.trim(), value.trim())
}

/// The raw value of the topmost Via of `headers` (first element if the
/// header carries several comma-joined values).
pub fn top_via(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::Via(via) => comma_parts(via_value(via)).next(),
        _ => None,
    })
}

fn via_value(via: &rsip::headers::Via) -> &str {
    use rsip::headers::UntypedHeader;
    via.value()
}

/// The raw value of the first header of `headers` selected by `pick`.
pub fn first_value<'h>(
    headers: &'h Headers,
    pick: impl Fn(&'h Header) -> Option<&'h str>,
) -> Option<&'h str> {
    headers.iter().find_map(pick)
}

/// Raw values of the dialog-identifying headers of a message.
#[derive(Debug, Clone, Copy)]
pub struct CoreValues<'h> {
    /// From value.
    pub from: Option<&'h str>,
    /// To value.
    pub to: Option<&'h str>,
    /// Call-ID value.
    pub call_id: Option<&'h str>,
    /// CSeq value.
    pub cseq: Option<&'h str>,
}

/// Reads the raw From/To/Call-ID/CSeq values of `headers`.
pub fn core_values(headers: &Headers) -> CoreValues<'_> {
    use rsip::headers::UntypedHeader;
    CoreValues {
        from: first_value(headers, |h| match h {
            Header::From(v) => Some(v.value()),
            _ => None,
        }),
        to: first_value(headers, |h| match h {
            Header::To(v) => Some(v.value()),
            _ => None,
        }),
        call_id: first_value(headers, |h| match h {
            Header::CallId(v) => Some(v.value()),
            _ => None,
        }),
        cseq: first_value(headers, |h| match h {
            Header::CSeq(v) => Some(v.value()),
            _ => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_what_rsip_renders() {
        for &name in crate::sip::assemble::HEADER_NAMES {
            for value in ["v 1", " padded  "] {
                let header = crate::sip::assemble::header(name, value);
                let (n, v) = wire_name_value(&header);
                // Byte for byte: the wire is written from these.
                assert_eq!(format!("{n}: {v}"), header.to_string(), "{name}");
                let (n, v) = name_value(&header);
                assert!(n.eq_ignore_ascii_case(name), "{n} / {name}");
                assert_eq!(v, value.trim());
            }
        }
    }

    #[test]
    fn commas_respect_quotes_and_angles() {
        let v = r#""a, b" <sip:x@y;p=1,2>, <sip:z>"#;
        assert_eq!(
            split_commas(v),
            vec![r#""a, b" <sip:x@y;p=1,2>"#, "<sip:z>"]
        );
        assert!(split_commas(" , ").is_empty());
        // Multi-byte characters next to the delimiters.
        let v = "\"한, 글\\\"\" <sip:é@x>,é ,<sip:z>";
        assert_eq!(
            split_commas(v),
            vec!["\"한, 글\\\"\" <sip:é@x>", "é", "<sip:z>"]
        );
    }

    #[test]
    fn via_parsing() {
        let via =
            ViaInfo::parse("SIP/2.0/UDP [2001:db8::1]:5060 ;branch=z9hG4bKabc;rport").unwrap();
        assert_eq!(via.sent_by, "[2001:db8::1]:5060");
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
        assert_eq!(find_param(via.params, "rport"), Some(""));
        assert!(ViaInfo::parse("garbage").is_none());
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("\"A;tag=no\" <sip:a@b;tag=no>;tag=yes"), Some("yes"));
        assert_eq!(tag_of("sip:a@b;tag=1"), Some("1"));
        assert_eq!(tag_of("<sip:a@b;tag=no>"), None);
        assert_eq!(tag_of("<sip:a@b"), None);
    }

    #[test]
    fn cseq_and_compact() {
        assert_eq!(parse_cseq(" 12  INVITE "), Some((12, "INVITE")));
        assert_eq!(parse_cseq("x INVITE"), None);
        assert_eq!(parse_cseq("1 INVITE extra"), None);
        assert_eq!(expand_compact("v"), "Via");
        assert_eq!(expand_compact("I"), "Call-ID");
        assert_eq!(expand_compact("X-Foo"), "X-Foo");
    }
}
