//! The JWT matrix and the other auth promises of SPEC §5, as pure tests (no sockets).
//! Keys: `tests/fixtures/test-only-*.pem` (test-only, see the README there).

mod authutil;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fanline::auth::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use authutil::*;

#[test]
fn alg_none_is_rejected_even_with_anonymous_enabled() {
    let a = Authenticator::from_config(&AuthConfig {
        anonymous: Some(true),
        ..hs_config()
    })
    .unwrap();
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    for token in [format!("{h}.{p}."), format!("{h}.{p}")] {
        assert!(auth_bearer(&a, &token).is_err(), "alg=none accepted");
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let a = Authenticator::from_config(&pem_config("RS256", "test-only-rsa1.pub.pem")).unwrap();
    let public = read("test-only-rsa1.pub.pem");
    let forged = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
        None,
        &claims(json!({})),
    );
    assert_rejected(
        auth_bearer(&a, &forged),
        AuthError::Invalid("alg_not_allowed"),
    );
    // A config that pins HS and RS on one key is refused outright.
    let mixed = AuthConfig {
        jwt: vec![JwtKeyConfig {
            public_key_pem: Some(fixture("test-only-rsa1.pub.pem").display().to_string()),
            ..jwt_entry(&["HS256", "RS256"])
        }],
        ..Default::default()
    };
    let e = Authenticator::from_config(&mixed).unwrap_err().to_string();
    assert!(e.contains("auth.jwt[0].algorithms"), "{e}");
}

#[test]
fn expired_and_leeway() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let old = hs_token(&claims(json!({"exp": now() - 3600})));
    assert_rejected(auth_bearer(&a, &old), AuthError::Expired);
    let within_leeway = hs_token(&claims(json!({"exp": now() - 30})));
    assert!(auth_bearer(&a, &within_leeway).is_ok());
}

#[test]
fn missing_exp_and_exp_as_string() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let none = hs_token(&claims(json!({"exp": null})));
    assert_rejected(auth_bearer(&a, &none), AuthError::Invalid("missing_exp"));
    let string = hs_token(&claims(json!({"exp": (now() + 600).to_string()})));
    assert!(
        auth_bearer(&a, &string).is_err(),
        "exp as a string accepted"
    );
    let stale_string = hs_token(&claims(json!({"exp": "1"})));
    assert!(auth_bearer(&a, &stale_string).is_err());
}

#[test]
fn future_nbf_wrong_aud_wrong_iss() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let t = hs_token(&claims(json!({"nbf": now() + 3600})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("not_yet_valid"));
    let t = hs_token(&claims(json!({"nbf": now() + 10})));
    assert!(auth_bearer(&a, &t).is_ok(), "nbf within leeway");
    let t = hs_token(&claims(json!({"aud": "someone-else"})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("audience"));
    let t = hs_token(&claims(json!({"aud": null})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("missing_claim"));
    let t = hs_token(&claims(json!({"iss": "https://evil.example"})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("issuer"));
}

#[test]
fn bad_signature_and_garbage() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let other = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    assert_rejected(auth_bearer(&a, &other), AuthError::Invalid("signature"));
    for junk in ["x", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"] {
        assert!(auth_bearer(&a, junk).is_err(), "{junk}");
    }
    // Alg not pinned (HS512 is not in the list).
    let t = signed(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &claims(json!({})),
    );
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("alg_not_allowed"));
}

#[test]
fn valid_hs256_rs256_es256_eddsa() {
    let hs = Authenticator::from_config(&hs_config()).unwrap();
    let id = auth_bearer(&hs, &hs_token(&claims(json!({"tier": "pro"})))).unwrap();
    assert_eq!(&*id.id, "user-1");
    assert_eq!(id.kind, IdentityKind::Jwt);
    assert_eq!(id.tier.as_deref(), Some("pro"));
    let cases = [
        (
            Algorithm::RS256,
            "RS256",
            "test-only-rsa1",
            EncodingKey::from_rsa_pem as fn(&[u8]) -> _,
        ),
        (
            Algorithm::ES256,
            "ES256",
            "test-only-ec",
            EncodingKey::from_ec_pem,
        ),
        (
            Algorithm::EdDSA,
            "EdDSA",
            "test-only-ed",
            EncodingKey::from_ed_pem,
        ),
    ];
    for (alg, name, file, load) in cases {
        let a = Authenticator::from_config(&pem_config(name, &format!("{file}.pub.pem"))).unwrap();
        let key = load(&read(&format!("{file}.key.pem"))).unwrap();
        let id = auth_bearer(&a, &signed(alg, &key, None, &claims(json!({})))).unwrap();
        assert_eq!(&*id.id, "user-1", "{name}");
        // The same token against the HMAC-only authenticator fails.
        assert!(auth_bearer(&hs, &signed(alg, &key, None, &claims(json!({})))).is_err());
    }
}

#[test]
fn acl_and_forced_filter_from_claims() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let t = hs_token(&claims(json!({"filter": {"tenant": "acme"}})));
    let id = auth_bearer(&a, &t).unwrap();
    assert!(id.allows("issues"));
    assert!(!id.allows("issues.private"));
    assert!(id.allows("predictions:BTC"));
    assert!(id.allows("gateway:user-1"));
    assert!(!id.allows("gateway:user-2"));
    assert_eq!(id.forced_filter, Some(json!({"tenant": "acme"})));
    // A `sub` of "*" stays literal.
    let t = hs_token(&claims(json!({"sub": "*"})));
    let id = auth_bearer(&a, &t).unwrap();
    assert!(id.allows("gateway:*") && !id.allows("gateway:x"));
    // No channels claim: nothing allowed. Wrong types: rejected.
    let id = auth_bearer(&a, &hs_token(&claims(json!({"channels": null})))).unwrap();
    assert!(!id.allows("issues"));
    let t = hs_token(&claims(json!({"channels": "issues"})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("channels_claim"));
    let t = hs_token(&claims(json!({"filter": ["x"]})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("filter_claim"));
    let t = hs_token(&claims(json!({"sub": null})));
    assert_rejected(auth_bearer(&a, &t), AuthError::Invalid("missing_sub"));
    // Claim names are configurable.
    let b = Authenticator::from_config(&AuthConfig {
        channels_claim: "chans".into(),
        ..hs_config()
    })
    .unwrap();
    let id = auth_bearer(&b, &hs_token(&claims(json!({"chans": ["x:*"]})))).unwrap();
    assert!(id.allows("x:1") && !id.allows("issues"));
}

#[test]
fn token_sources_and_subprotocol_echo() {
    let a = Authenticator::from_config(&hs_config()).unwrap();
    let t = hs_token(&claims(json!({})));
    let q = format!("v=1&token={}", t.replace('.', "%2E"));
    let id = a.authenticate(&view(Some(&q), &[])).unwrap();
    assert_eq!(id.subprotocol, None);
    let proto = format!("bearer, {t}");
    let headers = [httparse::Header {
        name: "Sec-WebSocket-Protocol",
        value: proto.as_bytes(),
    }];
    let id = a.authenticate(&view(None, &headers)).unwrap();
    assert_eq!(id.subprotocol, Some("bearer"));
    assert_rejected(a.authenticate(&view(None, &[])), AuthError::Missing);
}

#[test]
fn anonymous_mode() {
    let a = Authenticator::from_config(&AuthConfig {
        anonymous: Some(true),
        ..Default::default()
    })
    .unwrap();
    let id = a.authenticate(&view(None, &[])).unwrap();
    assert_eq!(&*id.id, "anonymous");
    assert_eq!(id.kind, IdentityKind::Anonymous);
    assert!(id.allows("anything:at-all"));
    // A bearer token with no JWT key configured is not silently anonymous.
    assert!(auth_bearer(&a, "a.b.c").is_err());
}

// ---- JWKS ----
