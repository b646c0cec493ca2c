//! The client address behind trusted proxies: `X-Forwarded-For` and PROXY protocol v2.
//!
//! Both are believed ONLY when the TCP peer is in `auth.trusted_proxies`; otherwise the peer
//! address is the client. Parsers are sans-I/O; partial input is a normal result.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::AuthSetupError;

/// Parses CIDRs (`10.0.0.0/8`) or bare addresses (`10.1.2.3`, a /32 or /128).
pub fn parse_cidrs(list: &[String], key: &str) -> Result<Vec<IpNet>, AuthSetupError> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| AuthSetupError::invalid(key, format!("{s:?} is not a CIDR")))
        })
        .collect()
}

/// True when `ip` is in one of `nets` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn in_cidrs(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address: `remote` unless `remote` is a trusted proxy, in which case the
/// `X-Forwarded-For` chain (all such headers, in order) is walked from the right, skipping
/// trusted proxies; the first untrusted address is the client. An unparsable entry stops the
/// walk at the last address known good. All entries trusted: the leftmost.
pub fn client_ip(remote: IpAddr, headers: &[httparse::Header<'_>], trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !in_cidrs(trusted, remote) {
        return remote;
    }
    let mut hops: Vec<&str> = Vec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("x-forwarded-for")
            && let Ok(v) = std::str::from_utf8(h.value)
        {
            hops.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()));
        }
    }
    let mut client = remote;
    for hop in hops.iter().rev().take(64) {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = canonical(ip);
        if !in_cidrs(trusted, client) {
            return client;
        }
    }
    client
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// PROXY protocol v2 signature.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A complete PROXY v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client address; `None` for `LOCAL` (health checks) or non-IP families:
    /// keep the socket's peer address.
    pub source: Option<SocketAddr>,
    /// Bytes to consume from the start of the stream (16 + the declared length).
    pub len: usize,
}

/// Why a PROXY v2 header was rejected: close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The stream does not start with the v2 signature (not PROXY v2 at all).
    NotProxyV2,
    /// Version nibble is not 2.
    BadVersion,
    /// Command is neither LOCAL nor PROXY.
    BadCommand,
    /// The address block is shorter than its family needs.
    BadLength,
}

/// Parses a PROXY v2 header at the start of `buf`. `Ok(None)`: need more bytes.
pub fn parse_proxy_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let sig = buf.len().min(12);
    if buf[..sig] != PROXY_V2_SIGNATURE[..sig] {
        return Err(ProxyError::NotProxyV2);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadVersion);
    }
    let cmd = ver_cmd & 0x0f;
    if cmd > 1 {
        return Err(ProxyError::BadCommand);
    }
    let fam = buf[13];
    let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    let source = if cmd == 0 {
        None
    } else {
        match fam >> 4 {
            1 => {
                if body.len() < 12 {
                    return Err(ProxyError::BadLength);
                }
                let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                let port = u16::from_be_bytes([body[8], body[9]]);
                Some(SocketAddr::new(IpAddr::V4(ip), port))
            }
            2 => {
                if body.len() < 36 {
                    return Err(ProxyError::BadLength);
                }
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[..16]);
                let port = u16::from_be_bytes([body[32], body[33]]);
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
            }
            _ => None,
        }
    };
    Ok(Some(ProxyHeader { source, len }))
}
