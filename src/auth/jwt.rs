//! JWT verification with pinned algorithms.
//!
//! Nothing in the token header is trusted beyond selecting among configured keys: its `alg`
//! must be in the entry's pinned list (one key family per entry, checked at startup) AND match
//! the key's family, so `alg: none` (not even parsed) and HS256-signed-with-the-RSA-public-key
//! both fail. `exp` is required and must be a number; `nbf` is checked when present; `aud` and
//! `iss` are required when configured; `leeway_s` applies to `exp` and `nbf`.
//!
//! Key selection: entries in config order; an entry applies when the token's `alg` is pinned
//! and, if both the entry and the token have a `kid`, they are equal. A JWKS entry offers its
//! keys whose `kid` equals the token's (all keys of the family when the token has no `kid`).
//! A bad signature moves on to the next candidate; any claim error (expired, audience, ...)
//! is final, since the signature was good.

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::config::KeyMaterial;
use super::jwks::JwksStore;
use super::{AuthConfig, AuthError, AuthSetupError};

/// Claims of a verified token.
pub type Claims = Map<String, Value>;

enum KeySource {
    Static(DecodingKey),
    Jwks(Arc<JwksStore>),
}

struct KeyEntry {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    source: KeySource,
}

/// All configured JWT keys. Send + Sync; verification takes no lock.
pub struct JwtVerifier {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

enum Outcome {
    /// Verified, or a final claim error.
    Done(Result<Claims, AuthError>),
    /// No candidate verified; the last candidate's error, if any was tried.
    Failed(Option<AuthError>),
}

enum Attempt {
    Verified(Claims),
    /// Try the next candidate (bad signature, key/alg mismatch).
    Next(AuthError),
    Final(AuthError),
}

fn attempt(token: &str, key: &DecodingKey, v: &Validation) -> Attempt {
    match decode::<Claims>(token, key, v) {
        Ok(data) => Attempt::Verified(data.claims),
        Err(e) => match e.kind() {
            ErrorKind::InvalidSignature => Attempt::Next(AuthError::Invalid("signature")),
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => Attempt::Next(AuthError::Invalid("alg_not_allowed")),
            other => Attempt::Final(map_error(other)),
        },
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::Invalid("not_yet_valid"),
        ErrorKind::InvalidAudience => AuthError::Invalid("audience"),
        ErrorKind::InvalidIssuer => AuthError::Invalid("issuer"),
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::Invalid("missing_exp"),
        ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing_claim"),
        ErrorKind::InvalidClaimFormat(_) => AuthError::Invalid("claim_format"),
        _ => AuthError::Invalid("malformed"),
    }
}

impl JwtVerifier {
    /// Loads every `[[auth.jwt]]` entry (PEM files and JWKS are read here, at startup).
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        let mut keys = Vec::new();
        for (i, k) in cfg.jwt.iter().enumerate() {
            let (algorithms, family, material) = k.checked(i)?;
            let mut v = Validation::new(algorithms[0]);
            v.algorithms = algorithms.clone();
            v.leeway = cfg.leeway_s;
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(aud) = &k.audience {
                v.set_audience(&[aud]);
                required.push("aud");
            } else {
                v.validate_aud = false;
            }
            if let Some(iss) = &k.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            v.set_required_spec_claims(&required);
            let source = match material {
                KeyMaterial::Secret(s) => KeySource::Static(DecodingKey::from_secret(s.as_bytes())),
                KeyMaterial::PemFile(p) => {
                    let name = format!("auth.jwt[{i}].public_key_pem");
                    let pem = std::fs::read(p).map_err(|e| AuthSetupError::Read {
                        path: p.to_string(),
                        why: e.to_string(),
                    })?;
                    let key = match family {
                        jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                        jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                        _ => DecodingKey::from_ed_pem(&pem),
                    }
                    .map_err(|e| {
                        AuthSetupError::invalid(
                            name,
                            format!("{p}: not a {family:?} public key PEM: {e}"),
                        )
                    })?;
                    KeySource::Static(key)
                }
                KeyMaterial::JwksFile(p) => KeySource::Jwks(Arc::new(JwksStore::file(
                    p,
                    family,
                    &format!("auth.jwt[{i}].jwks"),
                )?)),
                KeyMaterial::JwksHttps(url) => KeySource::Jwks(JwksStore::https(
                    url,
                    family,
                    &format!("auth.jwt[{i}].jwks"),
                )),
            };
            keys.push(KeyEntry {
                kid: k.kid.clone(),
                algorithms,
                validation: v,
                source,
            });
        }
        Ok(JwtVerifier { keys })
    }

    /// True when no key is configured (every bearer token is then rejected).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, Instant::now())
    }

    /// [`Self::verify`] with the instant used for the JWKS refetch rate limit.
    pub fn verify_at(&self, token: &str, now: Instant) -> Result<Claims, AuthError> {
        if token.len() > super::credentials::MAX_CREDENTIAL_LEN {
            return Err(AuthError::Invalid("credential_too_large"));
        }
        let header = decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        let mut missing_kid: Vec<&JwksStore> = Vec::new();
        let mut last = match self.try_keys(token, &header, &mut missing_kid) {
            Outcome::Done(r) => return r,
            Outcome::Failed(last) => last,
        };
        // No key verified. An unknown kid in a JWKS may be a rotation: refetch (rate-limited).
        let mut refetched = false;
        for store in &missing_kid {
            refetched |= store.request_refetch(now);
        }
        if refetched {
            match self.try_keys(token, &header, &mut Vec::new()) {
                Outcome::Done(r) => return r,
                Outcome::Failed(l) => last = l.or(last),
            }
        }
        if !self.keys.iter().any(|k| k.algorithms.contains(&header.alg)) {
            Err(AuthError::Invalid("alg_not_allowed"))
        } else if let Some(e) = last {
            Err(e)
        } else if header.kid.is_some() {
            Err(AuthError::Invalid("unknown_kid"))
        } else {
            Err(AuthError::Invalid("no_matching_key"))
        }
    }

    /// Tries every candidate key; records JWKS sets lacking the token's `kid`.
    fn try_keys<'s>(
        &'s self,
        token: &str,
        header: &jsonwebtoken::Header,
        missing_kid: &mut Vec<&'s JwksStore>,
    ) -> Outcome {
        let kid = header.kid.as_deref();
        let mut last = None;
        let mut run = |key: &DecodingKey, v: &Validation| match attempt(token, key, v) {
            Attempt::Verified(c) => Some(Outcome::Done(Ok(c))),
            Attempt::Final(e) => Some(Outcome::Done(Err(e))),
            Attempt::Next(e) => {
                last = Some(e);
                None
            }
        };
        for entry in &self.keys {
            if !entry.algorithms.contains(&header.alg) {
                continue;
            }
            if let (Some(want), Some(got)) = (entry.kid.as_deref(), kid)
                && want != got
            {
                continue;
            }
            match &entry.source {
                KeySource::Static(key) => {
                    if let Some(r) = run(key, &entry.validation) {
                        return r;
                    }
                }
                KeySource::Jwks(store) => {
                    let set = store.current();
                    let mut any = false;
                    for k in set.iter() {
                        if kid.is_some() && k.kid.as_deref() != kid {
                            continue;
                        }
                        if k.alg.is_some_and(|a| a != header.alg) {
                            continue;
                        }
                        any = true;
                        if let Some(r) = run(&k.key, &entry.validation) {
                            return r;
                        }
                    }
                    // Unknown kid, or an empty set (failed startup fetch): worth a refetch.
                    if !any && (kid.is_some() || set.is_empty()) {
                        missing_kid.push(store);
                    }
                }
            }
        }
        Outcome::Failed(last)
    }
}
