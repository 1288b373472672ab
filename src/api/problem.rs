//! RFC 9457 problem documents: every API error is one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Every problem slug the API answers with (a test keeps it complete).
pub const SLUGS: &[&str] = &[
    "dispute-resolved",
    "forbidden",
    "grant-already-approved",
    "grant-expired",
    "grant-pending",
    "idempotency-key-in-use",
    "idempotency-key-reused",
    "invalid-field",
    "invalid-token",
    "malformed-request",
    "missing-token",
    "no-grant",
    "no-proxy-number",
    "not-found",
    "payload-too-large",
    "range-not-satisfiable",
    "recording-damaged",
    "recording-disabled",
    "recording-erased",
    "release-incomplete",
    "token-disabled",
    "too-many-auth-failures",
    "unavailable",
    "unsupported-media-type",
];

/// Prefix of every problem `type`; the slug after it is stable.
pub const TYPE_PREFIX: &str = "urn:ansim:problem:";

/// An API error as an RFC 9457 problem (`application/problem+json`).
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable slug; `type` is [`TYPE_PREFIX`] + slug.
    pub slug: &'static str,
    /// Short, fixed summary of the problem type.
    pub title: &'static str,
    /// What happened this time.
    pub detail: String,
    /// The request field at fault, if one is (`a`, `numbers[2]`, `ttl`).
    pub field: Option<String>,
    /// How long the client should wait before trying again, sent as
    /// `Retry-After` in whole seconds (429 answers).
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl Problem {
    /// A problem of any kind.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 422: a field of the request is invalid.
    pub fn invalid_field(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Problem {
            detail: format!("{field}: {reason}"),
            field: Some(field),
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "Invalid request field",
                "",
            )
        }
    }

    /// 400: the request could not be read at all.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 404: the named resource does not exist.
    pub fn not_found(what: &str, id: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no {what} with id '{id}'"),
        )
    }

    /// 401: no valid credentials.
    pub fn unauthorized(slug: &'static str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, slug, "Not authenticated", detail)
    }

    /// 403: authenticated, but the role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden for this role",
            detail,
        )
    }

    /// 413: the body is larger than `[api] body_limit` (`limit` bytes).
    pub fn payload_too_large(limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 429: this client address sent too many unknown or disabled tokens;
    /// its token requests are refused, unchecked, for `retry_after`.
    pub fn too_many_auth_failures(retry_after: std::time::Duration) -> Self {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-auth-failures",
                "Too many failed authentication attempts",
                format!(
                    "too many requests with an invalid token came from your address; \
                     try again in {} s",
                    retry_after.as_secs()
                ),
            )
        }
    }

    /// 500/503: we failed. The detail stays generic; the cause is logged.
    pub fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the service could not complete the request; it was not applied unless stated otherwise",
        )
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Problem::internal(&e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("{TYPE_PREFIX}{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            field: self.field.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, json).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ansim\""),
            );
        }
        resp
    }
}
