//! Checks of the `[auth]` configuration (the types live in `config::auth`): pinned JWT
//! algorithms and key material per entry, claims, leeway, trusted proxies. Errors name the
//! offending key (`auth.jwt[1].algorithms`).

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::AuthSetupError;
use crate::config::auth::{AuthConfig, JwtKeyConfig, MAX_LEEWAY_S};

/// Where a JWT entry's key material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyMaterial<'a> {
    Secret(&'a str),
    PemFile(&'a str),
    JwksFile(&'a str),
    JwksHttps(&'a str),
}

/// Parses an algorithm name from the pinned list (`none` is not an algorithm).
pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl JwtKeyConfig {
    /// Validated view: pinned algorithms (one family) and key material.
    pub(crate) fn checked(
        &self,
        idx: usize,
    ) -> Result<(Vec<Algorithm>, AlgorithmFamily, KeyMaterial<'_>), AuthSetupError> {
        let key = |field: &str| format!("auth.jwt[{idx}].{field}");
        if self.algorithms.is_empty() {
            return Err(AuthSetupError::invalid(
                key("algorithms"),
                "must list at least one algorithm",
            ));
        }
        let mut algs = Vec::new();
        for name in &self.algorithms {
            let Some(a) = parse_alg(name) else {
                return Err(AuthSetupError::invalid(
                    key("algorithms"),
                    format!(
                        "unknown algorithm {name:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
                    ),
                ));
            };
            algs.push(a);
        }
        let family = algs[0].family();
        if algs.iter().any(|a| a.family() != family) {
            return Err(AuthSetupError::invalid(
                key("algorithms"),
                "algorithms of one entry must share a key type (HMAC, RSA, EC or Ed)",
            ));
        }
        let given = [
            self.secret.is_some(),
            self.public_key_pem.is_some(),
            self.jwks.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(AuthSetupError::invalid(
                key("secret"),
                "exactly one of secret, public_key_pem, jwks must be set",
            ));
        }
        let material = if let Some(s) = &self.secret {
            if family != AlgorithmFamily::Hmac {
                return Err(AuthSetupError::invalid(
                    key("secret"),
                    "a secret needs HS256/HS384/HS512",
                ));
            }
            if s.len() < 32 {
                return Err(AuthSetupError::invalid(
                    key("secret"),
                    "must be at least 32 bytes",
                ));
            }
            KeyMaterial::Secret(s)
        } else if let Some(p) = &self.public_key_pem {
            if family == AlgorithmFamily::Hmac {
                return Err(AuthSetupError::invalid(
                    key("algorithms"),
                    "a public key cannot verify HS* tokens (pin RS*/PS*/ES*/EdDSA)",
                ));
            }
            KeyMaterial::PemFile(p)
        } else {
            let url = self.jwks.as_deref().unwrap_or_default();
            if let Some(path) = url.strip_prefix("file://") {
                KeyMaterial::JwksFile(path)
            } else if url.starts_with("https://") {
                KeyMaterial::JwksHttps(url)
            } else {
                return Err(AuthSetupError::invalid(
                    key("jwks"),
                    "must start with file:// or https://",
                ));
            }
        };
        Ok((algs, family, material))
    }
}

impl AuthConfig {
    /// Rejects impossible settings, naming the key.
    pub fn validate(&self) -> Result<(), AuthSetupError> {
        if self.channels_claim.is_empty() {
            return Err(AuthSetupError::invalid(
                "auth.channels_claim",
                "must not be empty",
            ));
        }
        if self.filter_claim.is_empty() {
            return Err(AuthSetupError::invalid(
                "auth.filter_claim",
                "must not be empty",
            ));
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(AuthSetupError::invalid(
                "auth.leeway_s",
                format!("must be at most {MAX_LEEWAY_S}"),
            ));
        }
        for (i, k) in self.jwt.iter().enumerate() {
            k.checked(i)?;
        }
        super::proxy::parse_cidrs(&self.trusted_proxies, "auth.trusted_proxies")?;
        Ok(())
    }
}
