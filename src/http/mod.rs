//! Sans-I/O HTTP/1.1 for the public listener: request head parsing (httparse) with size and
//! header-count limits, the WebSocket upgrade checks of RFC 6455 §4.2, and response encoding.
//! Partial input is a normal result (`Ok(None)`), errors are `Copy` and carry their status.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Most headers a request may carry; more → 431.
pub const MAX_HEADERS: usize = 64;

/// Why a request head was refused. `Copy`; never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Head larger than the limit (431): the client sent too much before `\r\n\r\n`.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] headers (431).
    TooManyHeaders,
    /// Not HTTP/1.1 (400).
    Malformed,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::Malformed => 400,
        }
    }
    pub fn metric_reason(self) -> &'static str {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => "head_too_large",
            HttpError::Malformed => "bad_request",
        }
    }
}

/// A parsed request head borrowing the read buffer.
#[derive(Debug)]
pub struct Head<'h, 'b> {
    pub method: &'b str,
    pub path: &'b str,
    pub query: Option<&'b str>,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of `buf` the head occupies (a body, if any, follows).
    pub len: usize,
}

/// Parses a request head from `buf`. `Ok(None)`: incomplete and still under `max` bytes.
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
    max: usize,
) -> Result<Option<Head<'h, 'b>>, HttpError> {
    let mut req = httparse::Request::new(headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.ok_or(HttpError::Malformed)?;
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target, None),
            };
            let method = req.method.ok_or(HttpError::Malformed)?;
            Ok(Some(Head {
                method,
                path,
                query,
                headers: req.headers,
                len,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooManyHeaders),
        Err(_) => Err(HttpError::Malformed),
    }
}

/// The value of header `name` (case-insensitive), first occurrence.
pub fn header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A query parameter's raw (undecoded) value.
pub fn query_param<'b>(query: Option<&'b str>, name: &str) -> Option<&'b str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Why an upgrade request is not a valid WebSocket handshake: status and message.
pub type UpgradeError = (u16, &'static str);

/// Checks RFC 6455 §4.2.1 and returns the `Sec-WebSocket-Key`.
pub fn check_upgrade<'b>(head: &Head<'_, 'b>) -> Result<&'b [u8], UpgradeError> {
    if head.method != "GET" {
        return Err((405, "WebSocket upgrade requires GET"));
    }
    let upgrade = header(head.headers, "upgrade").is_some_and(|v| has_token(v, "websocket"));
    let connection = header(head.headers, "connection").is_some_and(|v| has_token(v, "upgrade"));
    if !upgrade || !connection {
        return Err((426, "expected a WebSocket upgrade"));
    }
    if header(head.headers, "sec-websocket-version") != Some(b"13") {
        return Err((426, "Sec-WebSocket-Version must be 13"));
    }
    match header(head.headers, "sec-websocket-key") {
        Some(k) if k.trim_ascii().len() == 24 => Ok(k.trim_ascii()),
        _ => Err((400, "missing or malformed Sec-WebSocket-Key")),
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
pub fn websocket_accept(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The 101 response; `subprotocol` is echoed when the client's credential chose one, and
/// `extensions` is the negotiated `Sec-WebSocket-Extensions` value, if any.
pub fn switching_protocols(
    key: &[u8],
    subprotocol: Option<&str>,
    extensions: Option<&str>,
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        websocket_accept(key)
    );
    if let Some(p) = subprotocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    if let Some(e) = extensions {
        r.push_str("Sec-WebSocket-Extensions: ");
        r.push_str(e);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Reason phrase of the statuses fanline sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response with `Content-Length`; `extra` lines are `Name: value`.
pub fn response(
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `response` (a whole response, or a response head such as SSE's `200`) with `extra` header
/// lines added right after its status line (CORS, rate-limit headers).
pub fn with_headers(response: Vec<u8>, extra: &[(&str, &str)]) -> Vec<u8> {
    let Some(at) = response.windows(2).position(|w| w == b"\r\n") else {
        return response;
    };
    if extra.is_empty() {
        return response;
    }
    let mut out = Vec::with_capacity(response.len() + 64 * extra.len());
    out.extend_from_slice(&response[..at + 2]);
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&response[at + 2..]);
    out
}

/// A JSON error body `{"error":code,"message":…}` response that closes the connection.
pub fn error_response(status: u16, code: &str, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    response(status, "application/json", extra, body.as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_added_after_the_status_line() {
        let r = response(200, "text/plain", &[("A", "1")], b"hi\r\n", false);
        let r = with_headers(r, &[("X-RateLimit-Limit", "3"), ("B", "2")]);
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nX-RateLimit-Limit: 3\r\nB: 2\r\nContent-Type")
        );
        assert!(text.ends_with("A: 1\r\n\r\nhi\r\n"), "{text:?}");
    }

    fn parse(buf: &[u8]) -> Result<Option<(String, Option<String>, usize)>, HttpError> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_head(buf, &mut h, 16 * 1024).map(|o| {
            o.map(|h| {
                (
                    h.path.to_string(),
                    h.query.map(str::to_string),
                    h.headers.len(),
                )
            })
        })
    }

    #[test]
    fn rfc6455_example_key_gives_rfc_accept() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn partial_head_asks_for_more_and_complete_head_splits_query() {
        assert_eq!(
            parse(b"GET /v1/ws?token=a HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        let (p, q, n) = parse(b"GET /v1/ws?token=a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.as_str(), q.as_deref(), n),
            ("/v1/ws", Some("token=a"), 1)
        );
    }

    #[test]
    fn oversized_head_and_header_floods_are_431() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(17 * 1024, b'a');
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..2000 {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        assert_eq!(parse(&many).unwrap_err().status(), 431);
    }

    #[test]
    fn query_params_and_tokens() {
        assert_eq!(query_param(Some("a=1&token=xyz"), "token"), Some("xyz"));
        assert_eq!(query_param(Some("a=1"), "token"), None);
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive", "upgrade"));
    }
}
