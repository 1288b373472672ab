//! The support web page at `/`: one HTML page, a script and a stylesheet,
//! compiled into the binary (`include_str!`), so it needs no network and
//! no build step. The page talks to the same JSON API with the signed-in
//! user's token.
//!
//! The page speaks Korean and English: every word it shows is in one
//! message catalogue per language (`web/i18n/ko.json`, `en.json`, served
//! at `/assets/i18n/{lang}.json`). `GET /` marks the page with the language
//! the browser's `Accept-Language` prefers (Korean when it names neither);
//! the script then follows `navigator.languages` (the same preference) or
//! the viewer's own choice from the page's switch.
//!
//! Every asset goes out with a strict Content-Security-Policy (only this
//! origin's scripts, styles and media; no inline script; no framing), so a
//! value that slipped into the page as markup still could not run.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");
const KO: &str = include_str!("web/i18n/ko.json");
const EN: &str = include_str!("web/i18n/en.json");

/// The languages the page speaks, the first the default.
const LANGS: [&str; 2] = ["ko", "en"];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; media-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: impl IntoResponse) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// `GET /`: the page, in the language `Accept-Language` prefers.
pub async fn index(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let page = INDEX.replacen(
        "<html lang=\"LANG\">",
        &format!("<html lang=\"{}\">", negotiate(accept)),
        1,
    );
    let mut r = asset("text/html; charset=utf-8", page);
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    r
}

/// The page's language for an `Accept-Language` value (RFC 9110 §12.5.4):
/// the one of [`LANGS`] with the highest weight, the first listed on a tie;
/// Korean when it names neither. Malformed parts are skipped.
pub fn negotiate(accept: &str) -> &'static str {
    let mut best: Option<(&'static str, u32)> = None;
    for part in accept.split(',').take(32) {
        let mut fields = part.split(';');
        let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = fields
            .find_map(|f| f.trim().strip_prefix("q="))
            .map_or(Some(1000), quality);
        let primary = tag.split('-').next().unwrap_or("");
        let Some(lang) = LANGS.iter().copied().find(|l| *l == primary) else {
            continue;
        };
        if let Some(w) = weight
            && w > 0
            && best.is_none_or(|(_, b)| w > b)
        {
            best = Some((lang, w));
        }
    }
    best.map_or(LANGS[0], |(l, _)| l)
}

/// A `q=` value in thousandths (`0.8` → 800), `None` if malformed.
fn quality(q: &str) -> Option<u32> {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let frac: u32 = format!("{frac:0<3}").parse().ok()?;
    let q = whole * 1000 + frac;
    (q <= 1000).then_some(q)
}

/// `GET /assets/i18n/{lang}.json`: a message catalogue.
pub async fn messages(Path(file): Path<String>) -> Response {
    let body = match file.as_str() {
        "ko.json" => KO,
        "en.json" => EN,
        _ => return super::problem::Problem::not_found("message catalogue", &file).into_response(),
    };
    asset("application/json; charset=utf-8", body)
}

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_accept_language() {
        assert_eq!(negotiate("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), "ko");
        assert_eq!(negotiate("en-US,en;q=0.9,ko;q=0.8"), "en");
        assert_eq!(negotiate("ja,en;q=0.5"), "en");
        assert_eq!(negotiate("ko;q=0.2, en;q=0.3"), "en");
        assert_eq!(negotiate("en;q=0, ko"), "ko");
        assert_eq!(negotiate("fr, de"), "ko", "neither: Korean");
        assert_eq!(negotiate(""), "ko");
        assert_eq!(
            negotiate("en;q=2, ko;q=0.1"),
            "ko",
            "a malformed weight is skipped"
        );
        assert_eq!(negotiate("EN-gb"), "en");
    }

    #[test]
    fn every_message_is_in_both_catalogues_and_the_page_names_only_known_ones() {
        let ko: serde_json::Map<String, serde_json::Value> = serde_json::from_str(KO).unwrap();
        let en: serde_json::Map<String, serde_json::Value> = serde_json::from_str(EN).unwrap();
        let mut a: Vec<_> = ko.keys().collect();
        let mut b: Vec<_> = en.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the catalogues have the same keys");
        for (k, v) in &ko {
            let (kv, ev) = (v.as_str().unwrap(), en[k].as_str().unwrap());
            let holes = |s: &str| {
                let mut h: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}'))
                    .map(|(n, _)| n.to_owned())
                    .collect();
                h.sort();
                h
            };
            assert_eq!(holes(kv), holes(ev), "{k}: the same placeholders");
            assert!(!kv.is_empty(), "{k}");
        }
        // Every key the page and the script name exists.
        let mut named = 0;
        for part in INDEX.split("data-i18n=\"").skip(1) {
            let key = part.split('"').next().unwrap();
            assert!(
                en.contains_key(key),
                "index.html: {key} is not in the catalogues"
            );
            named += 1;
        }
        // `t("key"` in the script, where `t` is the whole name called.
        for (i, _) in SCRIPT.match_indices("t(\"") {
            let before = SCRIPT[..i].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == '.' {
                continue;
            }
            let key = SCRIPT[i + 3..].split('"').next().unwrap();
            assert!(
                en.contains_key(key),
                "app.js: {key} is not in the catalogues"
            );
            named += 1;
        }
        assert!(named > 100, "{named} messages named");
    }
}
