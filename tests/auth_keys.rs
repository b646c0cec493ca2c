//! The other auth promises of SPEC §5 as pure tests (no sockets): JWKS rotation and outages,
//! `[auth]` config parsing and errors, API keys and reload, connection limits, X-Forwarded-For
//! and PROXY v2, parsers on garbage. The JWT matrix itself is in `auth_matrix.rs`.

mod authutil;

use fanline::auth::*;
use fanline::config::LimitsConfig;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::json;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use authutil::*;

fn write_jwks(path: &Path, keys: &[(u8, &str)]) {
    let set = JwkSet {
        keys: keys
            .iter()
            .map(|(n, kid)| {
                let mut jwk = Jwk::from_encoding_key(&rsa_key(*n), Algorithm::RS256).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk
            })
            .collect(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string(&set).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn jwks_config(path: &Path) -> AuthConfig {
    AuthConfig {
        jwt: vec![JwtKeyConfig {
            jwks: Some(format!("file://{}", path.display())),
            ..jwt_entry(&["RS256"])
        }],
        ..Default::default()
    }
}

#[test]
fn jwks_unknown_kid_rotation_rate_limit_and_last_good_set() {
    let path = temp_path("jwks.json");
    write_jwks(&path, &[(1, "k1")]);
    let v = JwtVerifier::from_config(&jwks_config(&path)).unwrap();
    let c = claims(json!({}));
    let t1 = signed(Algorithm::RS256, &rsa_key(1), Some("k1"), &c);
    let t2 = signed(Algorithm::RS256, &rsa_key(2), Some("k2"), &c);
    let t0 = Instant::now();
    assert!(v.verify_at(&t1, t0).is_ok());
    // Wrong key under a known kid: a signature failure, not a refetch.
    let forged = signed(Algorithm::RS256, &rsa_key(2), Some("k1"), &c);
    assert_eq!(
        v.verify_at(&forged, t0).unwrap_err(),
        AuthError::Invalid("signature")
    );

    // Rotation: the file now holds k2 only; the unknown kid triggers a refetch.
    write_jwks(&path, &[(2, "k2")]);
    assert!(v.verify_at(&t2, t0).is_ok(), "refetch on unknown kid");
    assert_eq!(
        v.verify_at(&t1, t0).unwrap_err(),
        AuthError::Invalid("unknown_kid")
    );

    // A second rotation within 30 s is not fetched (rate limit) ...
    write_jwks(&path, &[(1, "k1"), (2, "k2")]);
    let later = t0 + Duration::from_secs(10);
    assert_eq!(
        v.verify_at(&t1, later).unwrap_err(),
        AuthError::Invalid("unknown_kid")
    );
    // ... but is after 30 s.
    let after = t0 + Duration::from_secs(31);
    assert!(v.verify_at(&t1, after).is_ok());

    // A broken file keeps the last good set.
    std::fs::write(&path, "not json").unwrap();
    let t3 = signed(Algorithm::RS256, &rsa_key(1), Some("k3"), &c);
    assert!(v.verify_at(&t3, t0 + Duration::from_secs(70)).is_err());
    assert!(v.verify_at(&t1, t0 + Duration::from_secs(70)).is_ok());
    assert!(v.verify_at(&t2, t0 + Duration::from_secs(70)).is_ok());
    std::fs::remove_file(&path).ok();
}

#[test]
fn jwks_empty_set_refetches_for_tokens_without_kid() {
    let path = temp_path("jwks-empty.json");
    std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
    let v = JwtVerifier::from_config(&jwks_config(&path)).unwrap();
    write_jwks(&path, &[(1, "k1")]);
    let t = signed(Algorithm::RS256, &rsa_key(1), None, &claims(json!({})));
    assert!(v.verify(&t).is_ok());
    std::fs::remove_file(&path).ok();
}

#[test]
fn jwks_through_the_authenticator_and_config_errors() {
    let path = temp_path("jwks2.json");
    write_jwks(&path, &[(1, "k1")]);
    let a = Authenticator::from_config(&jwks_config(&path)).unwrap();
    let c = claims(json!({}));
    let t = signed(Algorithm::RS256, &rsa_key(1), Some("k1"), &c);
    assert!(auth_bearer(&a, &t).is_ok());
    let t = signed(Algorithm::RS256, &rsa_key(1), Some("nope"), &c);
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("unknown_kid"));
    std::fs::remove_file(&path).ok();

    let missing = jwks_config(Path::new("/nonexistent/jwks.json"));
    let e = Authenticator::from_config(&missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth.jwt[0].jwks"), "{e}");
    let http = AuthConfig {
        jwt: vec![JwtKeyConfig {
            jwks: Some("http://idp.example/jwks".into()),
            ..jwt_entry(&["RS256"])
        }],
        ..Default::default()
    };
    let e = Authenticator::from_config(&http).unwrap_err().to_string();
    assert!(e.contains("auth.jwt[0].jwks"), "{e}");
    let short = AuthConfig {
        jwt: vec![JwtKeyConfig {
            secret: Some("short".into()),
            ..jwt_entry(&["HS256"])
        }],
        ..Default::default()
    };
    let e = Authenticator::from_config(&short).unwrap_err().to_string();
    assert!(
        e.contains("auth.jwt[0].secret") && !e.contains("short\""),
        "{e}"
    );
    let none = AuthConfig {
        jwt: vec![JwtKeyConfig {
            secret: Some(SECRET.into()),
            ..jwt_entry(&["none"])
        }],
        ..Default::default()
    };
    assert!(Authenticator::from_config(&none).is_err());
    assert!(
        !format!("{:?}", hs_config()).contains(SECRET),
        "secret in Debug"
    );
}

#[test]
fn config_parses_from_toml() {
    let text = format!(
        r#"
[auth]
anonymous = false
channels_claim = "chans"
trusted_proxies = ["10.0.0.0/8"]
[[auth.jwt]]
algorithms = ["HS256"]
secret = "{SECRET}"
audience = "fanline"
issuer = "https://auth.example"
[[auth.jwt]]
algorithms = ["RS256"]
public_key_pem = "{}"
kid = "rsa-1"
"#,
        fixture("test-only-rsa1.pub.pem").display()
    );
    let path = temp_path("fanline.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = fanline::config::Config::load(Some(&path), Vec::new()).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(cfg.auth.channels_claim, "chans");
    assert_eq!(cfg.auth.filter_claim, "filter");
    assert_eq!(cfg.auth.leeway_s, 60);
    assert_eq!(cfg.auth.jwt.len(), 2);
    let a = Authenticator::from_config(&cfg.auth).unwrap();
    assert_eq!(a.trusted_proxies().len(), 1);
    let t = signed(
        Algorithm::RS256,
        &rsa_key(1),
        Some("rsa-1"),
        &claims(json!({"aud": null, "iss": null, "chans": ["a"]})),
    );
    assert!(auth_bearer(&a, &t).unwrap().allows("a"));
    let t = signed(
        Algorithm::RS256,
        &rsa_key(1),
        Some("rsa-2"),
        &claims(json!({})),
    );
    assert!(auth_bearer(&a, &t).is_err(), "kid pinned on the entry");
}

// ---- API keys ----

#[test]
fn api_keys_valid_wrong_and_revoked_after_reload() {
    let path = temp_path("api-keys.toml");
    let entry = |key: &str, id: &str| {
        format!(
            "[[key]]\nsha256 = \"{}\"\nidentity = \"{id}\"\nchannels = [\"gateway:{{sub}}\", \"status\"]\ntier = \"pro\"\n",
            sha256_hex(key)
        )
    };
    std::fs::write(
        &path,
        entry("test-only-key-1", "gw-1") + &entry("test-only-key-2", "gw-2"),
    )
    .unwrap();
    let a = Authenticator::from_config(&AuthConfig {
        api_keys: Some(ApiKeysConfig {
            file: path.display().to_string(),
        }),
        ..Default::default()
    })
    .unwrap();
    let with_key = |name: &'static str, key: &'static str| {
        let h = [httparse::Header {
            name,
            value: key.as_bytes(),
        }];
        a.authenticate(&view(None, &h))
    };
    let id = with_key("X-API-Key", "test-only-key-1").unwrap();
    assert_eq!((&*id.id, id.kind), ("gw-1", IdentityKind::ApiKey));
    assert_eq!(id.tier.as_deref(), Some("pro"));
    assert!(id.allows("gateway:gw-1") && id.allows("status") && !id.allows("gateway:gw-2"));
    assert!(with_key("api-key", "test-only-key-2").is_ok());
    assert_rejected(
        with_key("X-API-Key", "test-only-key-3"),
        AuthError::Invalid("unknown_api_key"),
    );

    // Revoke key 1, reload.
    std::fs::write(&path, entry("test-only-key-2", "gw-2")).unwrap();
    assert_eq!(a.reload_api_keys().unwrap(), 1);
    assert_rejected(
        with_key("X-API-Key", "test-only-key-1"),
        AuthError::Invalid("unknown_api_key"),
    );
    assert!(with_key("X-API-Key", "test-only-key-2").is_ok());
    // A broken file is refused and the current keys stay.
    std::fs::write(&path, "[[key]]\nsha256 = \"xyz\"\n").unwrap();
    assert!(a.reload_api_keys().is_err());
    assert!(with_key("X-API-Key", "test-only-key-2").is_ok());
    std::fs::remove_file(&path).ok();
}

// ---- limits ----

fn limits(max: usize, per_ip: usize, per_min: u32) -> LimitsConfig {
    LimitsConfig {
        max_connections: max,
        per_ip_connections: per_ip,
        connect_per_ip_per_min: per_min,
        ..Default::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn limiter_global_cap_releases_on_drop() {
    let l = ConnLimiter::new(&limits(2, 0, 0)).unwrap();
    let a = l.try_acquire(ip("198.51.100.1")).unwrap();
    let _b = l.try_acquire(ip("198.51.100.2")).unwrap();
    let e = l.try_acquire(ip("127.0.0.1")).unwrap_err();
    assert_eq!((e, e.status()), (LimitReject::MaxConnections, 503));
    drop(a);
    assert_eq!(l.active(), 1);
    assert!(l.try_acquire(ip("198.51.100.3")).is_ok());
}

#[test]
fn limiter_per_ip_rate_and_allowlist() {
    let l = ConnLimiter::new(&limits(100, 2, 6)).unwrap();
    let t0 = Instant::now();
    let p1 = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap();
    let _p2 = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap();
    assert_eq!(
        l.try_acquire_at(ip("198.51.100.9"), t0).unwrap_err(),
        LimitReject::PerIp
    );
    drop(p1);
    let _p3 = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap();
    // Four attempts so far (6/min budget); other addresses are independent.
    let _q = l.try_acquire_at(ip("198.51.100.10"), t0).unwrap();
    drop(_p3);
    drop(_p2);
    let r1 = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap();
    let r2 = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap();
    let e = l.try_acquire_at(ip("198.51.100.9"), t0).unwrap_err();
    assert_eq!(e, LimitReject::Rate { retry_after_s: 10 });
    assert_eq!((e.status(), e.retry_after_s()), (429, 10));
    drop((r1, r2));
    assert!(
        l.try_acquire_at(ip("198.51.100.9"), t0 + Duration::from_secs(10))
            .is_ok()
    );
    // Loopback is exempt from both per-IP limits by default.
    let held: Vec<_> = (0..50)
        .map(|_| l.try_acquire_at(ip("127.0.0.1"), t0).unwrap())
        .collect();
    assert!(l.try_acquire_at(ip("::1"), t0).is_ok());
    drop(held);
    // An IPv6 /64 is one client.
    let v6 = ConnLimiter::new(&limits(100, 1, 0)).unwrap();
    let _h = v6.try_acquire(ip("2001:db8::1")).unwrap();
    assert_eq!(
        v6.try_acquire(ip("2001:db8::2")).unwrap_err(),
        LimitReject::PerIp
    );
    assert!(v6.try_acquire(ip("2001:db8:0:1::2")).is_ok());
    let bad = LimitsConfig {
        connect_allowlist: vec!["nope".into()],
        ..Default::default()
    };
    assert!(
        ConnLimiter::new(&bad)
            .unwrap_err()
            .to_string()
            .contains("limits.connect_allowlist")
    );
}

#[test]
fn limiter_is_shared_across_threads() {
    let l = ConnLimiter::new(&limits(1000, 0, 0)).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..200 {
                    held.push(l.try_acquire(ip(&format!("10.{t}.0.{}", i % 250))).unwrap());
                }
                held.len()
            })
        })
        .collect();
    let n: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(n, 800);
    assert_eq!(l.active(), 0);
}

// ---- client address ----

#[test]
fn xff_trusted_vs_untrusted() {
    let trusted = parse_cidrs(&["10.0.0.0/8".into(), "192.0.2.1".into()], "t").unwrap();
    let h = [
        httparse::Header {
            name: "X-Forwarded-For",
            value: b"198.51.100.1, 203.0.113.5",
        },
        httparse::Header {
            name: "x-forwarded-for",
            value: b"10.1.1.1",
        },
    ];
    // Untrusted peer: headers ignored.
    assert_eq!(
        client_ip(ip("203.0.113.9"), &h, &trusted),
        ip("203.0.113.9")
    );
    assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    // Trusted peer: rightmost untrusted hop.
    assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.5"));
    let spoof = [httparse::Header {
        name: "X-Forwarded-For",
        value: b"garbage, 198.51.100.4:5555",
    }];
    assert_eq!(
        client_ip(ip("192.0.2.1"), &spoof, &trusted),
        ip("198.51.100.4")
    );
    assert_eq!(client_ip(ip("192.0.2.1"), &[], &trusted), ip("192.0.2.1"));
}

#[test]
fn proxy_v2_vectors() {
    let mut v4 = PROXY_SIG.to_vec();
    v4.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    v4.extend_from_slice(&[198, 51, 100, 1, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50]);
    v4.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let h = parse_proxy_v2(&v4).unwrap().unwrap();
    assert_eq!(h.source, Some("198.51.100.1:8080".parse().unwrap()));
    assert_eq!(h.len, 28);
    for cut in 0..28 {
        assert_eq!(parse_proxy_v2(&v4[..cut]), Ok(None), "cut at {cut}");
    }

    let mut v6 = PROXY_SIG.to_vec();
    v6.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    v6.extend_from_slice(&src.octets());
    v6.extend_from_slice(&[0u8; 16]);
    v6.extend_from_slice(&[0x01, 0xbb, 0x00, 0x50]);
    let h = parse_proxy_v2(&v6).unwrap().unwrap();
    assert_eq!(h.source, Some("[2001:db8::7]:443".parse().unwrap()));
    assert_eq!(h.len, 52);

    let mut local = PROXY_SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(
        parse_proxy_v2(&local),
        Ok(Some(ProxyHeader {
            source: None,
            len: 16
        }))
    );
    assert_eq!(
        parse_proxy_v2(b"GET / HTTP/1.1\r\n"),
        Err(ProxyError::NotProxyV2)
    );
    let mut bad = PROXY_SIG.to_vec();
    bad.extend_from_slice(&[0x11, 0x11, 0x00, 0x00]);
    assert_eq!(parse_proxy_v2(&bad), Err(ProxyError::BadVersion));
    let mut short = PROXY_SIG.to_vec();
    short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
    assert_eq!(parse_proxy_v2(&short), Err(ProxyError::BadLength));
}

const PROXY_SIG: [u8; 12] = fanline::auth::proxy::PROXY_V2_SIGNATURE;

#[test]
fn https_jwks_outage_at_startup_does_not_block_or_fail() {
    // Loopback port 1: connection refused at once. The gateway starts with an empty set and
    // rejects tokens (the refetch runs on the JWKS thread, never on the caller's).
    let cfg = AuthConfig {
        jwt: vec![JwtKeyConfig {
            jwks: Some("https://127.0.0.1:1/jwks.json".into()),
            ..jwt_entry(&["RS256"])
        }],
        ..Default::default()
    };
    let a = Authenticator::from_config(&cfg).unwrap();
    let t = signed(
        Algorithm::RS256,
        &rsa_key(1),
        Some("k1"),
        &claims(json!({})),
    );
    let started = Instant::now();
    for _ in 0..3 {
        assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("unknown_kid"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "verification waited on the network"
    );
}

#[test]
fn parsers_survive_garbage() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"aZ09 ,.:%=&\r\n\0\xff-_/[]bearer";
    let trusted = parse_cidrs(&["0.0.0.0/0".into()], "t").unwrap();
    for _ in 0..20_000 {
        let len = (next() % 96) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let names = [
            "Authorization",
            "Sec-WebSocket-Protocol",
            "X-API-Key",
            "X-Forwarded-For",
        ];
        let h = [httparse::Header {
            name: names[(next() % 4) as usize],
            value: &bytes,
        }];
        let q = String::from_utf8_lossy(&bytes);
        let _ = extract(&view(Some(&q), &h));
        let _ = client_ip(ip("10.0.0.1"), &h, &trusted);
        let mut proxy = PROXY_SIG.to_vec();
        proxy.extend_from_slice(&bytes);
        let _ = parse_proxy_v2(&proxy);
        let _ = parse_proxy_v2(&bytes);
    }
}
