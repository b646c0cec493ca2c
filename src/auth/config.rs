//! `[auth]` configuration: JWT keys, API key file, anonymous access, trusted proxies.
//!
//! Parsing is serde; [`AuthConfig::validate`] rejects impossible combinations with an error that
//! names the offending key (`auth.jwt[1].algorithms`). Secrets never appear in `Debug` output
//! or in serialized configuration (they are written as `"<redacted>"`).

use std::fmt;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Serialize, Serializer};

use super::AuthSetupError;

/// Largest accepted `auth.leeway_s` (an hour of clock skew is already a broken clock).
pub const MAX_LEEWAY_S: u64 = 3600;

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Connections without credentials are allowed (identity `anonymous`, every channel).
    /// Connections WITH bad credentials are still rejected. Default false.
    pub anonymous: bool,
    /// JWT claim listing the allowed channel patterns. Default `channels`.
    pub channels_claim: String,
    /// JWT claim holding a filter object ANDed into every subscription. Default `filter`.
    pub filter_claim: String,
    /// Clock skew tolerated for `exp` and `nbf`, seconds (at most 3600). Default 60.
    pub leeway_s: u64,
    /// `[[auth.jwt]]`: one entry per key; the first entry whose kid/alg matches verifies.
    pub jwt: Vec<JwtKeyConfig>,
    /// `[auth.api_keys]`: file of hashed API keys, reloaded on SIGHUP.
    pub api_keys: Option<ApiKeysConfig>,
    /// CIDRs whose `X-Forwarded-For` / PROXY v2 is believed. Default none (headers ignored).
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: false,
            channels_claim: "channels".into(),
            filter_claim: "filter".into(),
            leeway_s: 60,
            jwt: Vec::new(),
            api_keys: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[[auth.jwt]]`: exactly one of `secret`, `public_key_pem`, `jwks`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Pinned algorithms, e.g. `["RS256"]`. The token's `alg` must be one of these AND match
    /// the key type; nothing else is trusted from the token header.
    pub algorithms: Vec<String>,
    /// HMAC secret (HS256/384/512).
    #[serde(default, serialize_with = "redact")]
    pub secret: Option<String>,
    /// Path to a PEM public key (RSA, EC P-256/P-384, Ed25519).
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// `file:///path/jwks.json` or `https://issuer/.well-known/jwks.json`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Only tokens whose header `kid` equals this use this key (tokens without `kid` may too).
    #[serde(default)]
    pub kid: Option<String>,
    /// Required `aud` value; unset: `aud` is not checked.
    #[serde(default)]
    pub audience: Option<String>,
    /// Required `iss` value; unset: `iss` is not checked.
    #[serde(default)]
    pub issuer: Option<String>,
}

impl fmt::Debug for JwtKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeyConfig")
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_pem", &self.public_key_pem)
            .field("jwks", &self.jwks)
            .field("kid", &self.kid)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn redact<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

/// `[auth.api_keys]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// TOML file of `[[key]] sha256 = "hex", identity = "...", channels = [...], tier = "..."`.
    pub file: String,
}

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
