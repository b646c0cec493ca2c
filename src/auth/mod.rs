//! Authentication and authorization: credentials, JWT, API keys, channel ACL, connection limits.
//! Pure functions, no socket I/O. Reading PEM/JWKS/API-key files happens at startup and reload;
//! the only network I/O is an HTTPS JWKS refetch, on its own thread (see [`jwks`]).
//!
//! Handshake use (before the 101):
//! ```text
//! ip      = client_ip(peer, headers, auth.trusted_proxies())   // or PROXY v2 from a trusted peer
//! permit  = limiter.try_acquire(ip)?                           // 503 / 429 + Retry-After
//! id      = auth.authenticate(&RequestView { .. })?            // 401 (AuthError)
//! 101 with `Sec-WebSocket-Protocol: bearer` when id.subprotocol is Some
//! later: id.allows(channel) per subscribe (403 / error forbidden_channel), forced_filter ANDed
//! ```
//! Reload on SIGHUP: build a new `Authenticator::from_config` and swap it in with `arc-swap`
//! (keys, JWKS, API keys all re-read), or call [`Authenticator::reload_api_keys`] alone.
//! Open connections keep the `Identity` they were admitted with.
//!
//! Module map: `config` (`[auth]` types), `credentials` (where the credential is), `jwt` + `jwks`
//! (signature and claims), `api_keys` (hashed keys), `acl` (channel patterns), `limits`
//! (connection caps, token bucket), `proxy` (X-Forwarded-For, PROXY v2).

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde_json::Value;

pub mod acl;
pub mod api_keys;
pub mod config;
pub mod credentials;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod limits;
pub mod proxy;

pub use crate::config::auth::{ApiKeysConfig, AuthConfig, JwtKeyConfig};
pub use acl::ChannelAcl;
pub use api_keys::{ApiKeyGrant, ApiKeys, sha256_hex};
pub use credentials::{Credential, CredentialSource, RequestView, extract, redact_query};
pub use identity::{IdentityKey, IdentityLimiter, IdentityPermit, RestQuota};
pub use jwt::{Claims, JwtVerifier};
pub use limits::{ConnLimiter, ConnPermit, HeadSlot, LimitReject, Rate, TokenBucket};
pub use proxy::{
    PROXY_V2_SIGNATURE, ProxyError, ProxyHeader, client_ip, in_cidrs, parse_cidrs, parse_proxy_v2,
};

/// Why a request was not authenticated. The caller answers **401** for every variant (before
/// the 101) and logs at WARN with [`AuthError::label`]; tokens and keys are never included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No credential presented and anonymous access is disabled.
    Missing,
    /// The token's `exp` (plus leeway) is in the past: the client should refresh its token.
    Expired,
    /// Anything else; the label says why (`signature`, `alg_not_allowed`, `unknown_kid`,
    /// `audience`, `issuer`, `not_yet_valid`, `missing_exp`, `claim_format`, `malformed`,
    /// `unknown_api_key`, `unsupported_scheme`, ...). A metrics label, never secret material.
    Invalid(&'static str),
}

impl AuthError {
    /// HTTP status to answer: always 401.
    pub fn status(self) -> u16 {
        401
    }

    /// Short label for metrics (`handshake_rejected{reason}`) and logs.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::Invalid(r) => r,
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unauthorized: {}", self.label())
    }
}

impl std::error::Error for AuthError {}

/// A setup problem (startup or reload): bad `[auth]`/`[limits]` value, unreadable file.
/// Not `Copy`: it names the key and file. The caller refuses to start (or keeps the old
/// configuration on reload) and logs the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthSetupError {
    #[error("invalid setting {key}: {why}")]
    Invalid { key: String, why: String },
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
}

impl AuthSetupError {
    pub(crate) fn invalid(key: impl Into<String>, why: impl Into<String>) -> Self {
        AuthSetupError::Invalid {
            key: key.into(),
            why: why.into(),
        }
    }
}

/// How an identity authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Jwt,
    ApiKey,
    Anonymous,
}

/// Who is connected and what they may do. Immutable for the connection's life.
#[derive(Debug, Clone)]
pub struct Identity {
    /// JWT `sub`, the API key's `identity`, or `anonymous`.
    pub id: Arc<str>,
    pub kind: IdentityKind,
    /// JWT `tier` claim or the API key's tier.
    pub tier: Option<String>,
    pub acl: ChannelAcl,
    /// Object from the filter claim: ANDed into every subscription by the caller.
    pub forced_filter: Option<Value>,
    /// `Some("bearer")` when the token came in `Sec-WebSocket-Protocol`: select it in the 101.
    pub subprotocol: Option<&'static str>,
}

impl Identity {
    /// May this identity subscribe to `channel`?
    pub fn allows(&self, channel: &str) -> bool {
        self.acl.allows(channel)
    }

    /// The anonymous identity: every channel. One shared value (its id and ACL are `Arc`s),
    /// so an anonymous connection allocates nothing for it.
    pub fn anonymous() -> Self {
        static ANONYMOUS: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| Identity {
                id: Arc::from("anonymous"),
                kind: IdentityKind::Anonymous,
                tier: None,
                acl: ChannelAcl::all(),
                forced_filter: None,
                subprotocol: None,
            })
            .clone()
    }
}

/// Everything needed to authenticate a request. Send + Sync; share it behind an `Arc` (or an
/// `ArcSwap` for reloads).
#[derive(Debug)]
pub struct Authenticator {
    anonymous: bool,
    channels_claim: String,
    filter_claim: String,
    jwt: JwtVerifier,
    api_keys_file: Option<String>,
    api_keys: ArcSwap<ApiKeys>,
    trusted_proxies: Vec<IpNet>,
}

impl Authenticator {
    /// Validates `cfg` and loads every key (PEM, JWKS, API key file).
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        cfg.validate()?;
        let api_keys = match &cfg.api_keys {
            Some(a) => ApiKeys::load(&a.file)?,
            None => ApiKeys::default(),
        };
        Ok(Authenticator {
            anonymous: cfg.anonymous_allowed(),
            channels_claim: cfg.channels_claim.clone(),
            filter_claim: cfg.filter_claim.clone(),
            jwt: JwtVerifier::from_config(cfg)?,
            api_keys_file: cfg.api_keys.as_ref().map(|a| a.file.clone()),
            api_keys: ArcSwap::from_pointee(api_keys),
            trusted_proxies: parse_cidrs(&cfg.trusted_proxies, "auth.trusted_proxies")?,
        })
    }

    /// Re-reads the API key file (SIGHUP). On error the current keys stay in force.
    /// Returns the number of keys loaded.
    pub fn reload_api_keys(&self) -> Result<usize, AuthSetupError> {
        let Some(file) = &self.api_keys_file else {
            return Ok(0);
        };
        let keys = ApiKeys::load(file)?;
        let n = keys.len();
        self.api_keys.store(Arc::new(keys));
        Ok(n)
    }

    /// Parsed `auth.trusted_proxies`, for [`client_ip`] and PROXY v2 acceptance.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// Authenticates a request (see [`credentials`] for where credentials are looked for).
    pub fn authenticate(&self, req: &RequestView<'_>) -> Result<Identity, AuthError> {
        match extract(req)? {
            Credential::None if self.anonymous => Ok(Identity::anonymous()),
            Credential::None => Err(AuthError::Missing),
            Credential::ApiKey(key) => {
                let keys = self.api_keys.load();
                let g = keys
                    .lookup(key)
                    .ok_or(AuthError::Invalid("unknown_api_key"))?;
                Ok(Identity {
                    id: g.identity.clone(),
                    kind: IdentityKind::ApiKey,
                    tier: g.tier.clone(),
                    acl: g.acl.clone(),
                    forced_filter: None,
                    subprotocol: None,
                })
            }
            Credential::Bearer(token, source) => {
                if self.jwt.is_empty() {
                    return Err(AuthError::Invalid("jwt_not_configured"));
                }
                let claims = self.jwt.verify(&token)?;
                self.identity_from_claims(&claims, source.subprotocol())
            }
        }
    }

    fn identity_from_claims(
        &self,
        claims: &jwt::Claims,
        subprotocol: Option<&'static str>,
    ) -> Result<Identity, AuthError> {
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(AuthError::Invalid("missing_sub")),
        };
        let acl = match claims.get(&self.channels_claim) {
            None => ChannelAcl::none(),
            Some(Value::Array(items)) => {
                let mut pats = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Value::String(s) => pats.push(s.as_str()),
                        _ => return Err(AuthError::Invalid("channels_claim")),
                    }
                }
                ChannelAcl::compile(pats, |name| match claims.get(name) {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => None,
                })
            }
            Some(_) => return Err(AuthError::Invalid("channels_claim")),
        };
        let forced_filter = match claims.get(&self.filter_claim) {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(AuthError::Invalid("filter_claim")),
        };
        let tier = match claims.get("tier") {
            Some(Value::String(t)) => Some(t.clone()),
            _ => None,
        };
        Ok(Identity {
            id: Arc::from(sub),
            kind: IdentityKind::Jwt,
            tier,
            acl,
            forced_filter,
            subprotocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Authenticator>();
        check::<Identity>();
        check::<ConnLimiter>();
        check::<ConnPermit>();
        check::<AuthError>();
    }

    #[test]
    fn leeway_is_bounded() {
        let cfg = AuthConfig {
            leeway_s: 1 << 40,
            ..Default::default()
        };
        let e = Authenticator::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("auth.leeway_s"), "{e}");
    }
}
