//! `http::parse_head` on arbitrary bytes with an arbitrary head limit (1 KiB..=64 KiB, from the
//! first two input bytes); complete heads also go through `check_upgrade` and `query_param`.
//! Properties: no panic; a complete head never claims more bytes than the buffer holds nor more
//! than the limit; a partial head is only `Ok(None)` while under the limit.
#![no_main]

use fanline::http::{self, HttpError, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limit, buf) = match data {
        [a, b, rest @ ..] => (1024 + (u16::from_le_bytes([*a, *b]) as usize % (63 * 1024 + 1)), rest),
        _ => return,
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match http::parse_head(buf, &mut headers, limit) {
        Ok(Some(head)) => {
            assert!(head.len <= buf.len());
            assert!(head.len <= limit);
            assert!(head.headers.len() <= MAX_HEADERS);
            if let Ok(key) = http::check_upgrade(&head) {
                assert_eq!(key.len(), 24);
                let _ = http::websocket_accept(key);
            }
            if let Some(token) = http::query_param(head.query, "token") {
                let q = head.query.unwrap();
                assert!(!token.contains('&'));
                // A non-empty value is a substring of the query it came from (`token` with no
                // `=` yields a static "").
                if !token.is_empty() {
                    let (qs, ts) = (q.as_ptr() as usize, token.as_ptr() as usize);
                    assert!(ts >= qs && ts + token.len() <= qs + q.len());
                }
            }
        }
        Ok(None) => assert!(buf.len() < limit),
        Err(HttpError::HeadTooLarge | HttpError::TooManyHeaders | HttpError::Malformed) => {}
    }
});
