//! The demo page (`server.demo`, default on): `GET /` serves `clients/js/demo/index.html` and
//! `GET /fanline.js` the built JS client, both embedded in the binary at compile time (the
//! committed `clients/js/dist/fanline.js`, checked against a fresh build by its test script).

use crate::http;

/// The page: pick a channel, live events, state, events/s, latency sparkline, resumes.
pub const INDEX_HTML: &str = include_str!("../../clients/js/demo/index.html");
/// The JS client (an ES module) the page imports.
pub const FANLINE_JS: &str = include_str!("../../clients/js/dist/fanline.js");

/// The response for `path`, when it is one of the demo's.
pub fn route(method: &str, path: &str) -> Option<Vec<u8>> {
    let (ctype, body) = match path {
        "/" => ("text/html; charset=utf-8", INDEX_HTML),
        "/fanline.js" => ("text/javascript; charset=utf-8", FANLINE_JS),
        _ => return None,
    };
    if method != "GET" {
        return Some(http::error_response(
            405,
            "method_not_allowed",
            "use GET",
            &[("Allow", "GET")],
        ));
    }
    Some(http::response(
        200,
        ctype,
        &[
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body.as_bytes(),
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_client_are_served() {
        let r = String::from_utf8(route("GET", "/").unwrap()).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html"),
            "{r}"
        );
        assert!(r.contains("import { FanlineClient } from \"./fanline.js\""));
        let js = route("GET", "/fanline.js").unwrap();
        assert!(String::from_utf8_lossy(&js).contains("FanlineClient"));
        assert!(route("GET", "/other").is_none());
        assert!(route("POST", "/").unwrap().starts_with(b"HTTP/1.1 405"));
    }
}
