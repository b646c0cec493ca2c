//! Auth cost per connection: JWT verification (HS256, RS256, ES256), API key lookup,
//! credential extraction and a limiter acquire/release. All on the handshake path, none on
//! the delivery path. Keys: `tests/fixtures/test-only-*` (test-only).

use std::hint::black_box;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use fanline::auth::*;
use fanline::config::LimitsConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"sub": "user-1", "exp": now + 3600, "aud": "fanline",
           "channels": ["issues", "predictions:*", "gateway:{sub}"], "filter": {"tenant": "acme"}})
}

fn authenticator(alg: &str, secret: Option<&str>, pem: Option<String>) -> Authenticator {
    Authenticator::from_config(&AuthConfig {
        jwt: vec![JwtKeyConfig {
            algorithms: vec![alg.into()],
            secret: secret.map(str::to_string),
            public_key_pem: pem,
            audience: Some("fanline".into()),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap()
}

fn bench_jwt(c: &mut Criterion) {
    let hs = authenticator("HS256", Some(SECRET), None);
    let hs_token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let rs = authenticator("RS256", None, Some(fixture("test-only-rsa1.pub.pem")));
    let rs_key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("test-only-rsa1.key.pem")).unwrap())
            .unwrap();
    let rs_token = encode(&Header::new(Algorithm::RS256), &claims(), &rs_key).unwrap();
    let es = authenticator("ES256", None, Some(fixture("test-only-ec.pub.pem")));
    let es_key =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("test-only-ec.key.pem")).unwrap()).unwrap();
    let es_token = encode(&Header::new(Algorithm::ES256), &claims(), &es_key).unwrap();

    for (name, a, token) in [
        ("authenticate_hs256", &hs, &hs_token),
        ("authenticate_rs256", &rs, &rs_token),
        ("authenticate_es256", &es, &es_token),
    ] {
        let value = format!("Bearer {token}");
        c.bench_function(name, |b| {
            b.iter(|| {
                let h = [httparse::Header {
                    name: "Authorization",
                    value: value.as_bytes(),
                }];
                let req = RequestView {
                    path: "/v1/ws",
                    query: None,
                    headers: &h,
                    remote: "203.0.113.1".parse().unwrap(),
                };
                black_box(a.authenticate(black_box(&req)).unwrap())
            })
        });
    }
}

fn bench_api_keys(c: &mut Criterion) {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[key]]\nsha256 = \"{}\"\nidentity = \"gw-{i}\"\nchannels = [\"gateway:{{sub}}\"]\n",
            sha256_hex(&format!("test-only-key-{i}"))
        ));
    }
    let keys = ApiKeys::parse(&text, "bench").unwrap();
    c.bench_function("api_key_lookup_hit_10k_keys", |b| {
        b.iter(|| black_box(keys.lookup(black_box("test-only-key-4242")).is_some()))
    });
    c.bench_function("api_key_lookup_miss_10k_keys", |b| {
        b.iter(|| black_box(keys.lookup(black_box("not-a-key")).is_none()))
    });
}

fn bench_limiter(c: &mut Criterion) {
    let l = ConnLimiter::new(&LimitsConfig {
        connect_per_ip_per_min: 0,
        ..Default::default()
    })
    .unwrap();
    let ip: std::net::IpAddr = "203.0.113.1".parse().unwrap();
    c.bench_function("conn_limiter_acquire_release", |b| {
        b.iter(|| drop(black_box(l.try_acquire(ip).unwrap())))
    });
}

criterion_group!(benches, bench_jwt, bench_api_keys, bench_limiter);
criterion_main!(benches);
