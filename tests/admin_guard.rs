//! The admin listener's guard: never open off-loopback without a token, every route behind the
//! token when one is set, and request framing it cannot follow refused rather than guessed.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fanline::config::Config;
use util::*;

#[test]
fn admin_off_loopback_without_a_token_refuses_to_start_naming_the_key() {
    let env = |addr: &str| {
        vec![
            ("FANLINE_SERVER_ADMIN_LISTEN".to_string(), addr.to_string()),
            ("FANLINE_KAFKA_MODE".to_string(), "direct".to_string()),
        ]
    };
    let e = Config::load(None, env("0.0.0.0:9091")).expect_err("refused");
    assert!(e.to_string().contains("server.admin_token"), "{e}");
    let e = Config::load(None, env("[::]:9091")).expect_err("refused");
    assert!(e.to_string().contains("server.admin_token"), "{e}");
    assert!(Config::load(None, env("127.0.0.1:9091")).is_ok());
    let mut with_token = env("0.0.0.0:9091");
    with_token.push(("FANLINE_SERVER_ADMIN_TOKEN".into(), "s3cret".into()));
    assert!(Config::load(None, with_token).is_ok());
}

fn raw(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn every_admin_route_answers_401_without_the_token() {
    let s = start(|c| c.server.admin_token = Some("s3cret".into()));
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/connections"),
        ("DELETE", "/v1/connections/abc"),
        ("POST", "/v1/publish"),
        ("GET", "/nope"),
    ] {
        let (status, _) = http(s.admin_addr, method, path, Some("{}"));
        assert_eq!(status, 401, "{method} {path}");
    }
    let ok = raw(
        s.admin_addr,
        "GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn admin_refuses_transfer_encoding_and_bad_content_length() {
    let s = start(|_| {});
    let chunked = raw(
        s.admin_addr,
        "POST /v1/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         1d\r\n{\"channel\":\"c\",\"data\":{}}   \r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
    for cl in ["abc", "-1", "1, 2"] {
        let bad = raw(
            s.admin_addr,
            &format!("GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n"),
        );
        assert!(bad.starts_with("HTTP/1.1 400"), "{cl}: {bad}");
    }
    let twice = raw(
        s.admin_addr,
        "GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
    );
    assert!(twice.starts_with("HTTP/1.1 400"), "{twice}");
    assert_eq!(
        metric(&s, "fanline_events_ingested_total"),
        0.0,
        "nothing was published"
    );
}
