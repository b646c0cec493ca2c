//! Credential extraction (and the X-Forwarded-For / PROXY v2 parsers) on arbitrary bytes:
//! the input is split into a query string and `name: value` header lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (query, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = Vec::new();
    for line in rest.split(|&b| b == b'\n').take(64) {
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let Ok(name) = std::str::from_utf8(&line[..colon]) else { continue };
        headers.push(httparse::Header { name, value: line.get(colon + 1..).unwrap_or(&[]) });
    }
    let req = fanline::auth::RequestView {
        path: "/v1/ws",
        query: std::str::from_utf8(query).ok(),
        headers: &headers,
        remote: std::net::IpAddr::from([10, 0, 0, 1]),
    };
    let _ = fanline::auth::extract(&req);
    if let Some(q) = req.query {
        let _ = fanline::auth::redact_query(q);
    }
    // The peer (10.0.0.1) must be trusted, or `client_ip` returns early and X-Forwarded-For
    // is never parsed.
    let trusted: [ipnet::IpNet; 2] = [
        "10.0.0.0/8".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ];
    let _ = fanline::auth::client_ip(req.remote, &headers, &trusted);
    let _ = fanline::auth::parse_proxy_v2(data);
});
