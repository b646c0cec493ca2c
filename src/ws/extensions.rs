//! `Sec-WebSocket-Extensions` negotiation for `permessage-deflate` (RFC 7692 §5, §7.1). Pure.
//!
//! Owns: parsing the client's offers (RFC 6455 §9.1 grammar: comma-separated extensions,
//! `;`-separated parameters, token or quoted-string values), picking the first acceptable
//! `permessage-deflate` offer, and formatting the response header value.
//!
//! Policy (what fanline supports, and therefore answers):
//! - `server_no_context_takeover` is ALWAYS in the response, offered or not: every event is
//!   compressed once, from a fresh compressor, and the same bytes go to every socket.
//! - `server_max_window_bits=N` (8..=15) is accepted and echoed; the sender then only uses the
//!   compressed frame of events whose payload is at most 2^N bytes (a back-reference can never
//!   reach further than the message is long), and the plain frame otherwise.
//! - `client_no_context_takeover` is accepted and echoed (the inflater resets per message).
//! - `client_max_window_bits` (with or without a value 8..=15) is accepted and not echoed: the
//!   inflater always keeps a 32 KiB window, which decodes any client window.
//! - Anything else in an offer (unknown or repeated parameter, bad value) declines that offer;
//!   the next offer is tried, and with none left no extension is used (the 101 stays valid).

/// Whether the peer keeps its LZ77 window across messages (RFC 7692 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextTakeover {
    /// The peer may reference earlier messages: the inflater keeps its window.
    Keep,
    /// Each message is compressed independently: the inflater resets after each message.
    Reset,
}

/// A negotiated `permessage-deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Whether the client compresses with context takeover (we always reset on our side).
    pub client_context: ContextTakeover,
    /// `server_max_window_bits` the client asked for, echoed in the response.
    pub server_max_window_bits: Option<u8>,
}

impl Deflate {
    /// Largest payload whose compressed frame this connection may receive: the frame's
    /// back-references must stay within 2^`server_max_window_bits`.
    pub fn max_compressed_payload(&self) -> usize {
        self.server_max_window_bits
            .map_or(usize::MAX, |b| 1usize << b)
    }

    /// The `Sec-WebSocket-Extensions` response value.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_context == ContextTakeover::Reset {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(b) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        s
    }
}

/// Picks the first acceptable `permessage-deflate` offer among all `Sec-WebSocket-Extensions`
/// header values (in order). `None`: no offer we can accept (answer without the header).
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Deflate> {
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        for ext in split_outside_quotes(text, ',') {
            let mut parts = split_outside_quotes(ext, ';').into_iter();
            let name = parts.next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                continue;
            }
            if let Some(d) = accept_offer(parts) {
                return Some(d);
            }
        }
    }
    None
}

/// One offer's parameters → the accepted configuration, or `None` to decline it.
fn accept_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Deflate> {
    let mut d = Deflate {
        client_context: ContextTakeover::Keep,
        server_max_window_bits: None,
    };
    let mut seen = [false; 4];
    for p in params {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        let idx = match key {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                d.client_context = ContextTakeover::Reset;
                1
            }
            "server_max_window_bits" => {
                d.server_max_window_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[idx], true) {
            return None;
        }
    }
    Some(d)
}

/// `8..=15` written as 1*DIGIT without leading zeros (RFC 7692 §7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// A token, or a quoted-string without escapes (none are valid in these values).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|s| !s.contains(['"', '\\'])),
        None => Some(v),
    }
}

/// Splits on `sep` outside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(values: &[&str]) -> Option<Deflate> {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn browser_offer_is_accepted_with_server_no_context_takeover() {
        // Chrome and Firefox send exactly this.
        let d = neg(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(d.client_context, ContextTakeover::Keep);
        assert_eq!(
            d.response(),
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(d.max_compressed_payload(), usize::MAX);
    }

    #[test]
    fn client_no_context_takeover_is_echoed() {
        let d = neg(&["permessage-deflate;client_no_context_takeover;server_no_context_takeover"])
            .unwrap();
        assert_eq!(d.client_context, ContextTakeover::Reset);
        assert_eq!(
            d.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits_is_echoed_and_limits_compressed_payloads() {
        let d = neg(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(d.server_max_window_bits, Some(10));
        assert_eq!(d.max_compressed_payload(), 1024);
        assert_eq!(
            d.response(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
        let q = neg(&["permessage-deflate; server_max_window_bits=\"9\""]).unwrap();
        assert_eq!(q.server_max_window_bits, Some(9));
    }

    #[test]
    fn client_max_window_bits_with_value_is_accepted_and_not_echoed() {
        let d = neg(&["permessage-deflate; client_max_window_bits=10"]).unwrap();
        assert_eq!(
            d.response(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn bad_offers_are_declined_falling_back_to_the_next() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=20",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; mystery",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(neg(&[bad]), None, "{bad}");
            let next = format!("{bad}, permessage-deflate; client_no_context_takeover");
            let d = neg(&[&next]).unwrap_or_else(|| panic!("fallback after {bad}"));
            assert_eq!(d.client_context, ContextTakeover::Reset, "{bad}");
        }
    }

    #[test]
    fn offers_across_several_header_lines_are_tried_in_order() {
        let d = neg(&[
            "foo; a=\"x,y\"",
            "permessage-deflate; server_max_window_bits=15",
        ])
        .unwrap();
        assert_eq!(d.server_max_window_bits, Some(15));
        assert_eq!(neg(&[]), None);
        assert_eq!(neg(&[""]), None);
        assert!(negotiate([&[0xff, 0xfe][..]]).is_none());
    }
}
