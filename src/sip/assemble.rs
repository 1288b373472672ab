//! rsip's message model, filled in from text [`super::parse`] has already
//! cut up, without rsip's nom parser.
//!
//! rsip 0.4.0 is kept as the model (`Request`, `Response`, `Header`), but
//! its parser needed the whole message re-written in its strict form first
//! and then tokenised it a second time, byte by byte: together about a
//! fifth of the SIP thread at 5,000 calls/s. Here each part is converted
//! as rsip's own tokenizer would (the same header variants for the same
//! names, compared case-insensitively), and only the Request-URI still
//! goes through rsip's URI tokenizer, which must consume all of it.

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, StatusCode, Uri};

/// The method of an exact (case-sensitive) RFC 3261 method token, `None`
/// for one rsip does not know.
pub fn method(token: &str) -> Option<Method> {
    Some(match token {
        "ACK" => Method::Ack,
        "BYE" => Method::Bye,
        "CANCEL" => Method::Cancel,
        "INFO" => Method::Info,
        "INVITE" => Method::Invite,
        "MESSAGE" => Method::Message,
        "NOTIFY" => Method::Notify,
        "OPTIONS" => Method::Options,
        "PRACK" => Method::PRack,
        "PUBLISH" => Method::Publish,
        "REFER" => Method::Refer,
        "REGISTER" => Method::Register,
        "SUBSCRIBE" => Method::Subscribe,
        "UPDATE" => Method::Update,
        _ => return None,
    })
}

/// A Request-URI through rsip's URI tokenizer; text it leaves unread is
/// an error (as the space rsip's request parser expected there would be).
pub fn request_uri(text: &str) -> Result<Uri, String> {
    let (rest, tokens) = rsip::common::uri::Tokenizer::tokenize(text.as_bytes())
        .map_err(|e| format!("rsip: {e}"))?;
    if !rest.is_empty() {
        return Err("Request-URI has unparseable trailing text".into());
    }
    Uri::try_from(tokens).map_err(|e| format!("rsip: {e}"))
}

/// The status of a response, with the reason as received for a code rsip
/// has no name for (rsip's tokenizer does the same).
pub fn status(code: u16, reason: &str) -> StatusCode {
    match StatusCode::from(code) {
        StatusCode::Other(code, _) => StatusCode::Other(code, reason.to_owned()),
        known => known,
    }
}

/// Declares [`header`]: each name, compared case-insensitively, gives the
/// rsip variant of the same name; any other name is `Header::Other`.
macro_rules! typed_headers {
    ($($text:literal => $variant:ident),* $(,)?) => {
        /// The rsip header for `name: value` (name already expanded from
        /// its compact form), as rsip's tokenizer would make it.
        pub fn header(name: &str, value: &str) -> Header {
            $(
                if name.eq_ignore_ascii_case($text) {
                    return Header::$variant(rsip::headers::$variant::new(value));
                }
            )*
            Header::Other(name.to_owned(), value.to_owned())
        }
    };
}

// The headers of every call first; then the rest of rsip's list.
typed_headers! {
    "Via" => Via,
    "From" => From,
    "To" => To,
    "Call-ID" => CallId,
    "CSeq" => CSeq,
    "Contact" => Contact,
    "Max-Forwards" => MaxForwards,
    "Content-Type" => ContentType,
    "Content-Length" => ContentLength,
    "Route" => Route,
    "Record-Route" => RecordRoute,
    "Allow" => Allow,
    "Supported" => Supported,
    "User-Agent" => UserAgent,
    "Server" => Server,
    "Accept" => Accept,
    "Accept-Encoding" => AcceptEncoding,
    "Accept-Language" => AcceptLanguage,
    "Alert-Info" => AlertInfo,
    "Authentication-Info" => AuthenticationInfo,
    "Authorization" => Authorization,
    "Call-Info" => CallInfo,
    "Content-Disposition" => ContentDisposition,
    "Content-Encoding" => ContentEncoding,
    "Content-Language" => ContentLanguage,
    "Date" => Date,
    "Error-Info" => ErrorInfo,
    "Event" => Event,
    "Expires" => Expires,
    "In-Reply-To" => InReplyTo,
    "Mime-Version" => MimeVersion,
    "Min-Expires" => MinExpires,
    "Organization" => Organization,
    "Priority" => Priority,
    "Proxy-Authenticate" => ProxyAuthenticate,
    "Proxy-Authorization" => ProxyAuthorization,
    "Proxy-Require" => ProxyRequire,
    "Reply-To" => ReplyTo,
    "Require" => Require,
    "Retry-After" => RetryAfter,
    "Subject" => Subject,
    "Timestamp" => Timestamp,
    "Unsupported" => Unsupported,
    "Warning" => Warning,
    "WWW-Authenticate" => WwwAuthenticate,
}

/// The raw value of an rsip header, whatever variant it is.
#[cfg(test)]
fn value_of(header: &Header) -> String {
    header
        .to_string()
        .split_once(": ")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

/// Header names for tests: every one rsip has a variant for, in mixed
/// cases, and two it has none for.
#[cfg(test)]
pub(crate) const HEADER_NAMES: &[&str] = &[
    "via",
    "FROM",
    "To",
    "Call-Id",
    "cseq",
    "Contact",
    "Max-Forwards",
    "content-type",
    "Content-Length",
    "Route",
    "Record-Route",
    "Allow",
    "Supported",
    "User-Agent",
    "Server",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Authentication-Info",
    "Authorization",
    "Call-Info",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "In-Reply-To",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Reply-To",
    "Require",
    "Retry-After",
    "Subject",
    "Subscription-State",
    "Timestamp",
    "Unsupported",
    "Warning",
    "www-authenticate",
    "P-Asserted-Identity",
    "X-Odd",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The same names give the same variants as rsip's own parser.
    #[test]
    fn headers_match_rsip_parser() {
        for name in HEADER_NAMES {
            let text = format!("OPTIONS sip:a@b SIP/2.0\r\n{name}: v 1\r\n\r\n");
            let theirs = rsip::Request::try_from(text.as_str()).unwrap();
            let theirs = theirs.headers.iter().next().unwrap();
            let ours = header(name, "v 1");
            assert_eq!(&ours, theirs, "{name}");
            assert_eq!(value_of(&ours), "v 1");
        }
    }

    #[test]
    fn methods_and_statuses() {
        assert_eq!(method("INVITE"), Some(Method::Invite));
        assert_eq!(method("PRACK"), Some(Method::PRack));
        assert_eq!(method("invite"), None);
        assert_eq!(status(200, "Fine"), StatusCode::OK);
        assert_eq!(status(299, "Odd"), StatusCode::Other(299, "Odd".into()));
    }

    #[test]
    fn request_uris_must_be_read_whole() {
        let uri = request_uri("sip:+8210@h.example:5070;user=phone").unwrap();
        assert_eq!(uri.to_string(), "sip:+8210@h.example:5070;user=phone");
        assert!(request_uri("sip:bob@example.com;foo=a:b").is_err());
        assert!(request_uri("").is_err());
    }
}
