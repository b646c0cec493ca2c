//! CORS for the public listener's HTTP routes (SPEC §6): REST, SSE and `/health/*` answer
//! browsers of other origins. Sans-I/O: a request head in, response bytes out.
//!
//! - A request with an `Origin` that `limits.allowed_origins` allows (any when the list is
//!   empty) gets `Access-Control-Allow-Origin: <that origin>` and `Vary: Origin` on its answer,
//!   errors included (a browser can then read why it was refused).
//! - `OPTIONS` (preflight) → `204` with the allowed methods and request headers
//!   (`Authorization`, `Last-Event-ID`, `X-API-Key`, …); a disallowed origin → `403`.
//!
//! The WebSocket upgrade is not CORS (browsers send `Origin` and the handshake checks it).
//! One-shot responses only, never the event path: splicing headers into a response is a copy.

use crate::http::{self, Head};

/// Request headers a cross-origin page may send.
pub const ALLOW_HEADERS: &str =
    "Authorization, Last-Event-ID, X-API-Key, If-None-Match, Cache-Control, Content-Type";
/// Methods of the CORS routes.
pub const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
/// Response headers a cross-origin page may read.
pub const EXPOSE_HEADERS: &str =
    "ETag, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset";
/// How long a browser may cache a preflight answer (seconds).
pub const MAX_AGE_S: &str = "600";

/// Whether `path` is one of the routes that answer other origins.
pub fn is_cors_path(path: &str) -> bool {
    matches!(
        path,
        super::sse::PATH | "/health/live" | "/health/ready" | "/v1/latest"
    ) || path.strip_prefix("/v1/channels/").is_some_and(|r| {
        let name = r
            .strip_suffix("/events")
            .or_else(|| r.strip_suffix("/latest"));
        name.is_some_and(|n| !n.is_empty())
    })
}

/// What the request's `Origin` earns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Not a CORS route, or no `Origin`: answer as is.
    None,
    /// An allowed origin: echo it.
    Allow(String),
    /// An origin `limits.allowed_origins` does not list.
    Forbidden,
}

impl Cors {
    /// Classifies a request head on the public listener.
    pub fn of(allowed: &[String], head: &Head<'_, '_>) -> Cors {
        if !is_cors_path(head.path) {
            return Cors::None;
        }
        let Some(origin) = http::header(head.headers, "origin") else {
            return Cors::None;
        };
        // httparse already refused CR/LF in values; also refuse non-ASCII and controls, so the
        // echo is a clean header value.
        let Ok(origin) = std::str::from_utf8(origin) else {
            return Cors::Forbidden;
        };
        if origin.is_empty() || origin.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Cors::Forbidden;
        }
        if allowed.is_empty() || allowed.iter().any(|o| o == origin) {
            Cors::Allow(origin.to_string())
        } else {
            Cors::Forbidden
        }
    }

    /// The preflight answer for an `OPTIONS` request on a CORS route.
    pub fn preflight(&self) -> Vec<u8> {
        match self {
            Cors::Allow(o) => no_content(&[
                ("Access-Control-Allow-Origin", o),
                ("Access-Control-Allow-Methods", ALLOW_METHODS),
                ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", MAX_AGE_S),
                ("Vary", "Origin"),
            ]),
            Cors::Forbidden => http::error_response(
                403,
                "forbidden_origin",
                "Origin not allowed",
                &[("Vary", "Origin")],
            ),
            Cors::None => no_content(&[("Allow", ALLOW_METHODS), ("Vary", "Origin")]),
        }
    }

    /// Adds the CORS headers to a response head (a complete response or the SSE `200` head):
    /// inserted right after the status line.
    pub fn apply(&self, response: Vec<u8>) -> Vec<u8> {
        match self {
            Cors::Allow(o) => http::with_headers(
                response,
                &[
                    ("Access-Control-Allow-Origin", o),
                    ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
                    ("Vary", "Origin"),
                ],
            ),
            Cors::Forbidden => http::with_headers(response, &[("Vary", "Origin")]),
            Cors::None => response,
        }
    }
}

/// `204 No Content` (no body, so no `Content-Length`/`Content-Type`), then close.
fn no_content(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = String::from("HTTP/1.1 204 No Content\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(allowed: &[&str], target: &str, origin: Option<&str>) -> Cors {
        let raw = match origin {
            Some(o) => format!("GET {target} HTTP/1.1\r\nHost: x\r\nOrigin: {o}\r\n\r\n"),
            None => format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        };
        let mut h = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let head = http::parse_head(raw.as_bytes(), &mut h, 16 * 1024)
            .unwrap()
            .unwrap();
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Cors::of(&allowed, &head)
    }

    #[test]
    fn origins_routes_and_the_allow_list() {
        let app = "https://app.example";
        assert_eq!(
            cors(&[], "/v1/sse?channels=a", Some(app)),
            Cors::Allow(app.into())
        );
        assert_eq!(
            cors(&[app], "/health/ready", Some(app)),
            Cors::Allow(app.into())
        );
        assert_eq!(
            cors(
                &[app],
                "/v1/channels/a/latest",
                Some("https://evil.example")
            ),
            Cors::Forbidden
        );
        assert_eq!(cors(&[], "/v1/latest", None), Cors::None);
        assert_eq!(cors(&[], "/v1/ws", Some(app)), Cors::None);
        assert_eq!(cors(&[], "/", Some(app)), Cors::None);
        assert_eq!(cors(&[], "/v1/latest", Some("")), Cors::Forbidden);
    }

    #[test]
    fn headers_go_after_the_status_line() {
        let r = Cors::Allow("http://a:1".into()).apply(http::response(
            200,
            "application/json",
            &[],
            b"{}",
            true,
        ));
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: http://a:1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nVary: Origin\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let p = String::from_utf8(Cors::Allow("http://a:1".into()).preflight()).unwrap();
        assert!(p.starts_with("HTTP/1.1 204 "), "{p}");
        assert!(
            p.contains("Access-Control-Allow-Headers: Authorization, Last-Event-ID, X-API-Key")
        );
        assert!(
            String::from_utf8(Cors::Forbidden.preflight())
                .unwrap()
                .starts_with("HTTP/1.1 403 ")
        );
    }
}
