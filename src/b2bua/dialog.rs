//! One leg's dialog state (RFC 3261 §12) and building requests in it.

use std::net::SocketAddr;

use rsip::headers::{CSeq, CallId, Contact, From, MaxForwards, Route, To, UntypedHeader, Via};
use rsip::{Header, Headers, Method, Request, Response, Uri};

use super::message::{contact_uri, header_list};
use crate::sip::headers::{core_values, tag_of};
use crate::sip::new_branch;

/// Dialog state of one leg, seen from our side.
#[derive(Debug, Clone)]
pub(super) struct Dialog {
    /// Call-ID of the leg.
    pub(super) call_id: String,
    /// Our name-addr with our tag: `From` of the requests we send.
    pub(super) local: String,
    /// The peer's name-addr (with its tag once known): `To` of our requests.
    pub(super) remote: String,
    /// The CSeq of the last request we sent.
    pub(super) local_cseq: u32,
    /// The CSeq of the last request the peer sent.
    pub(super) remote_cseq: Option<u32>,
    /// Remote target (the peer's Contact URI), if known and parseable.
    pub(super) target: Option<Uri>,
    /// Request-URI when no usable target is known.
    pub(super) fallback: Uri,
    /// Route set, in the order Route headers are written.
    pub(super) routes: Vec<String>,
    /// Our SIP address, for Via and Contact.
    pub(super) local_sip: SocketAddr,
    /// How the leg's requests travel (`UDP`, `TCP`, `TLS`), for Via and
    /// Contact.
    pub(super) transport: &'static str,
}

impl Dialog {
    /// Our tag on this leg.
    pub(super) fn local_tag(&self) -> &str {
        tag_of(&self.local).unwrap_or_default()
    }

    /// The peer's tag, empty while unknown.
    pub(super) fn remote_tag(&self) -> &str {
        tag_of(&self.remote).unwrap_or_default()
    }

    /// Our Contact header.
    pub(super) fn contact(&self) -> Header {
        let param = match self.transport {
            "TCP" => ";transport=tcp",
            "TLS" => ";transport=tls",
            _ => "",
        };
        Header::Contact(Contact::new(format!(
            "<sip:ansim@{}{param}>",
            self.local_sip
        )))
    }

    /// A Via for a new client transaction from us.
    pub(super) fn via(&self) -> Header {
        Header::Via(Via::new(format!(
            "SIP/2.0/{} {};branch={};rport",
            self.transport,
            self.local_sip,
            new_branch()
        )))
    }

    /// A new in-dialog request with the next CSeq (no body, no Contact).
    pub(super) fn request(&mut self, method: Method) -> Request {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let mut headers = Headers::default();
        headers.push(self.via());
        headers.push(Header::MaxForwards(MaxForwards::new("70")));
        for route in &self.routes {
            headers.push(Header::Route(Route::new(route.as_str())));
        }
        headers.push(Header::From(From::new(self.local.as_str())));
        headers.push(Header::To(To::new(self.remote.as_str())));
        headers.push(Header::CallId(CallId::new(self.call_id.as_str())));
        headers.push(Header::CSeq(CSeq::new(format!(
            "{} {method}",
            self.local_cseq
        ))));
        Request {
            method,
            uri: self.target.clone().unwrap_or_else(|| self.fallback.clone()),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        }
    }

    /// Whether `request` belongs to this dialog: same Call-ID, the peer's
    /// From tag, and our To tag (a missing To tag is accepted only when
    /// `early` is set, for CANCEL and early BYE).
    pub(super) fn matches(&self, request: &Request, early: bool) -> bool {
        let core = core_values(&request.headers);
        let from_tag = core.from.and_then(tag_of).unwrap_or_default();
        let to_tag = core.to.and_then(tag_of);
        core.call_id == Some(self.call_id.as_str())
            && from_tag == self.remote_tag()
            && match to_tag {
                Some(tag) => tag == self.local_tag(),
                None => early,
            }
    }

    /// Records the CSeq of a request from the peer; false if it is not
    /// higher than the last one (RFC 3261 §12.2.2: answer 500).
    pub(super) fn accept_remote_cseq(&mut self, number: u32) -> bool {
        if self.remote_cseq.is_some_and(|last| number <= last) {
            return false;
        }
        self.remote_cseq = Some(number);
        true
    }

    /// Updates the remote target from a Contact (target refresh).
    pub(super) fn refresh_target(&mut self, headers: &Headers) {
        if let Some(uri) = contact_uri(headers).and_then(|u| Uri::try_from(u.as_str()).ok()) {
            self.target = Some(uri);
        }
    }

    /// As UAC: learns the peer's tag, target and route set (Record-Route
    /// reversed) from a dialog-creating response.
    pub(super) fn learn_from_response(&mut self, response: &Response) {
        if let Some(to) = core_values(&response.headers).to
            && tag_of(to).is_some()
        {
            self.remote = to.to_owned();
        }
        self.refresh_target(&response.headers);
        let mut routes = header_list(&response.headers, "Record-Route");
        routes.reverse();
        self.routes = routes;
    }
}
