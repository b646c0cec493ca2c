//! `[auth]` configuration types: JWT keys, API key file, anonymous access, trusted proxies.
//!
//! Parsing is serde; `auth` checks them (`AuthConfig::validate` in `auth/config.rs` rejects
//! impossible combinations with an error that names the offending key, `auth.jwt[1].algorithms`).
//! Secrets never appear in `Debug` output or in serialized configuration (they are written as
//! `"<redacted>"`).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Largest accepted `auth.leeway_s` (an hour of clock skew is already a broken clock).
pub const MAX_LEEWAY_S: u64 = 3600;

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Connections without credentials are allowed (identity `anonymous`, every channel).
    /// Connections WITH bad credentials are still rejected. Unset (default): allowed only
    /// while no JWT key and no API key file is configured, so a zero-config gateway works out
    /// of the box and configuring any credential turns anonymous access off.
    pub anonymous: Option<bool>,
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
            anonymous: None,
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

impl AuthConfig {
    /// Whether connections without credentials are accepted (see [`AuthConfig::anonymous`]).
    pub fn anonymous_allowed(&self) -> bool {
        self.anonymous
            .unwrap_or(self.jwt.is_empty() && self.api_keys.is_none())
    }
}
