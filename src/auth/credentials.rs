//! Credential extraction from an upgrade request: sans-I/O, no allocation unless the query
//! token is percent-encoded.
//!
//! Sources, first match wins (so a browser sending both a cookie-free subprotocol token and a
//! stale `?token=` is judged on the header):
//! 1. `Authorization: Bearer <jwt>` (scheme case-insensitive);
//! 2. `Sec-WebSocket-Protocol: bearer, <jwt>` (the server must then answer
//!    `Sec-WebSocket-Protocol: bearer`, see [`CredentialSource::subprotocol`]);
//! 3. `X-API-Key: <key>` or `api-key: <key>`;
//! 4. `?token=<jwt>` in the query string (percent-decoded).
//!
//! Secrets are never logged: `Credential`'s `Debug` prints only the source and length; log
//! request queries through [`redact_query`].

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use super::AuthError;

/// Largest credential accepted (bytes); larger is `Invalid("credential_too_large")`.
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// What the handshake code knows about a request when it authenticates it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Path without the query, e.g. `/v1/ws`.
    pub path: &'a str,
    /// Raw query string without `?`, if any.
    pub query: Option<&'a str>,
    pub headers: &'a [httparse::Header<'a>],
    /// Client address (after [`super::client_ip`] / PROXY v2 when behind a trusted proxy).
    pub remote: IpAddr,
}

/// Where a bearer token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer`.
    Header,
    /// `Sec-WebSocket-Protocol: bearer, <jwt>`.
    Subprotocol,
    /// `?token=`.
    Query,
}

impl CredentialSource {
    /// The subprotocol the server must select in its 101 answer: `Some("bearer")` for
    /// [`CredentialSource::Subprotocol`] (browsers fail the handshake otherwise).
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            CredentialSource::Subprotocol => Some("bearer"),
            _ => None,
        }
    }
}

/// A credential found in a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A JWT and where it came from.
    Bearer(Cow<'a, str>, CredentialSource),
    /// An API key, verbatim.
    ApiKey(&'a str),
    /// Nothing presented.
    None,
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Bearer(t, s) => write!(f, "Bearer({s:?}, {} bytes)", t.len()),
            Credential::ApiKey(k) => write!(f, "ApiKey({} bytes)", k.len()),
            Credential::None => f.write_str("None"),
        }
    }
}

fn header_str(value: &[u8]) -> Result<&str, AuthError> {
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(AuthError::Invalid("credential_too_large"));
    }
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| AuthError::Invalid("malformed_credential"))
}

/// Finds the credential in `req` (see the module doc for the order).
///
/// Errors: `Invalid("unsupported_scheme")` for `Authorization` other than Bearer,
/// `Invalid("malformed_credential")` for non-UTF-8 or empty values, `Invalid("credential_too_large")`.
pub fn extract<'a>(req: &RequestView<'a>) -> Result<Credential<'a>, AuthError> {
    let mut protocol = None;
    let mut api_key = None;
    for h in req.headers {
        if h.name.eq_ignore_ascii_case("authorization") {
            let v = header_str(h.value)?;
            let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::Invalid("unsupported_scheme"));
            }
            let token = token.trim();
            if token.is_empty() {
                return Err(AuthError::Invalid("malformed_credential"));
            }
            return Ok(Credential::Bearer(
                Cow::Borrowed(token),
                CredentialSource::Header,
            ));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") && protocol.is_none() {
            protocol = bearer_in_protocols(header_str(h.value)?)?;
        } else if (h.name.eq_ignore_ascii_case("x-api-key")
            || h.name.eq_ignore_ascii_case("api-key"))
            && api_key.is_none()
        {
            let v = header_str(h.value)?;
            if v.is_empty() {
                return Err(AuthError::Invalid("malformed_credential"));
            }
            api_key = Some(v);
        }
    }
    if let Some(t) = protocol {
        return Ok(Credential::Bearer(
            Cow::Borrowed(t),
            CredentialSource::Subprotocol,
        ));
    }
    if let Some(k) = api_key {
        return Ok(Credential::ApiKey(k));
    }
    if let Some(t) = req.query.and_then(|q| query_param(q, "token")) {
        if t.len() > MAX_CREDENTIAL_LEN {
            return Err(AuthError::Invalid("credential_too_large"));
        }
        let t = percent_decode(t).ok_or(AuthError::Invalid("malformed_credential"))?;
        if t.is_empty() {
            return Err(AuthError::Invalid("malformed_credential"));
        }
        return Ok(Credential::Bearer(t, CredentialSource::Query));
    }
    Ok(Credential::None)
}

/// `bearer, <jwt>` anywhere in a comma-separated subprotocol list: the entry after `bearer`.
fn bearer_in_protocols(v: &str) -> Result<Option<&str>, AuthError> {
    let mut it = v.split(',').map(str::trim);
    while let Some(p) = it.next() {
        if p == "bearer" {
            return match it.next() {
                Some(t) if !t.is_empty() => Ok(Some(t)),
                _ => Err(AuthError::Invalid("malformed_credential")),
            };
        }
    }
    Ok(None)
}

/// The raw (still encoded) value of the first `name=` pair in `query`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `query` with the value of every `token=` pair replaced by `REDACTED`, for logging request
/// lines. Borrows when there is no token.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    if query_param(query, "token").is_none() {
        return Cow::Borrowed(query);
    }
    let parts: Vec<&str> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("token", _)) => "token=REDACTED",
            _ => pair,
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

/// Decodes `%XX` escapes (not `+`: JWTs never contain spaces). `None` on a bad escape or
/// invalid UTF-8. Borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(q: Option<&'a str>, h: &'a [httparse::Header<'a>]) -> RequestView<'a> {
        RequestView {
            path: "/v1/ws",
            query: q,
            headers: h,
            remote: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn sources_in_order() {
        let h = [
            httparse::Header {
                name: "X-API-Key",
                value: b"k1",
            },
            httparse::Header {
                name: "Sec-WebSocket-Protocol",
                value: b"fanline.v1, bearer, a.b.c",
            },
        ];
        let c = extract(&view(Some("token=x"), &h)).unwrap();
        assert_eq!(
            c,
            Credential::Bearer("a.b.c".into(), CredentialSource::Subprotocol)
        );
        let c = extract(&view(Some("a=1&token=a%2Eb.c"), &h[..1])).unwrap();
        assert_eq!(c, Credential::ApiKey("k1"));
        let c = extract(&view(Some("a=1&token=a%2Eb.c"), &[])).unwrap();
        assert_eq!(
            c,
            Credential::Bearer("a.b.c".into(), CredentialSource::Query)
        );
        let auth = [httparse::Header {
            name: "authorization",
            value: b"bearer   t.t.t ",
        }];
        let c = extract(&view(None, &auth)).unwrap();
        assert_eq!(
            c,
            Credential::Bearer("t.t.t".into(), CredentialSource::Header)
        );
        assert_eq!(extract(&view(None, &[])).unwrap(), Credential::None);
    }

    #[test]
    fn malformed_values() {
        let basic = [httparse::Header {
            name: "Authorization",
            value: b"Basic dXNlcjpwdw==",
        }];
        assert!(matches!(
            extract(&view(None, &basic)),
            Err(AuthError::Invalid("unsupported_scheme"))
        ));
        let dangling = [httparse::Header {
            name: "Sec-WebSocket-Protocol",
            value: b"bearer",
        }];
        assert!(extract(&view(None, &dangling)).is_err());
        assert!(extract(&view(Some("token=%zz"), &[])).is_err());
        assert!(extract(&view(Some("token=%ff"), &[])).is_err());
        let debug = format!(
            "{:?}",
            Credential::Bearer("secret.jwt.x".into(), CredentialSource::Query)
        );
        assert!(!debug.contains("secret"), "{debug}");
        assert_eq!(redact_query("a=1&token=x.y.z&b"), "a=1&token=REDACTED&b");
        assert!(matches!(redact_query("a=1"), Cow::Borrowed("a=1")));
    }
}
