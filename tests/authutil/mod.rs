//! Shared helpers of the pure auth tests (`auth_matrix`, `auth_keys`): fixtures, tokens,
//! configs and request views. Keys: `tests/fixtures/test-only-*.pem` (test-only).
#![allow(dead_code)]

use fanline::auth::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

pub fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("fanline-auth-{}-{tag}-{n}", std::process::id()))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn claims(extra: Value) -> Value {
    let mut c = json!({
        "sub": "user-1",
        "exp": now() + 600,
        "aud": "fanline",
        "iss": "https://auth.example",
        "channels": ["issues", "predictions:*", "gateway:{sub}"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

pub fn jwt_entry(algs: &[&str]) -> JwtKeyConfig {
    JwtKeyConfig {
        algorithms: algs.iter().map(|s| s.to_string()).collect(),
        audience: Some("fanline".into()),
        issuer: Some("https://auth.example".into()),
        ..Default::default()
    }
}

pub fn hs_config() -> AuthConfig {
    AuthConfig {
        jwt: vec![JwtKeyConfig {
            secret: Some(SECRET.into()),
            ..jwt_entry(&["HS256", "HS384"])
        }],
        ..Default::default()
    }
}

pub fn pem_config(alg: &str, pub_pem: &str) -> AuthConfig {
    AuthConfig {
        jwt: vec![JwtKeyConfig {
            public_key_pem: Some(fixture(pub_pem).display().to_string()),
            ..jwt_entry(&[alg])
        }],
        ..Default::default()
    }
}

pub fn hs_token(c: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn signed(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, c: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, c, key).unwrap()
}

pub fn rsa_key(n: u8) -> EncodingKey {
    EncodingKey::from_rsa_pem(&read(&format!("test-only-rsa{n}.key.pem"))).unwrap()
}

#[track_caller]
pub fn auth_bearer(a: &Authenticator, token: &str) -> Result<Identity, AuthError> {
    let value = format!("Bearer {token}");
    let headers = [httparse::Header {
        name: "Authorization",
        value: value.as_bytes(),
    }];
    a.authenticate(&view(None, &headers))
}

pub fn view<'a>(query: Option<&'a str>, headers: &'a [httparse::Header<'a>]) -> RequestView<'a> {
    RequestView {
        path: "/v1/ws",
        query,
        headers,
        remote: "203.0.113.7".parse().unwrap(),
    }
}

#[track_caller]
pub fn assert_rejected(r: Result<Identity, AuthError>, want: AuthError) {
    match r {
        Ok(id) => panic!("accepted as {:?}, wanted {want:?}", id.id),
        Err(e) => assert_eq!(e, want),
    }
}

// ---- the JWT matrix ----
