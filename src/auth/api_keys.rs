//! API keys: a TOML file of SHA-256 hashes, looked up in constant time per candidate.
//!
//! ```toml
//! [[key]]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! identity = "gw-1"
//! channels = ["gateway:gw-1"]   # `{sub}` / `{identity}` expand to the identity
//! tier = "pro"                  # optional
//! ```
//!
//! The presented key is hashed once; entries are bucketed by the first 8 bytes of their hash
//! (timing reveals at most which hash prefix a guess maps to, which says nothing about any key)
//! and the full 32 bytes are compared with `subtle::ConstantTimeEq`.
//! Reload: build a new [`ApiKeys`] with [`ApiKeys::load`] and swap it in (the
//! [`super::Authenticator`] does so in `reload_api_keys`); revoked keys are simply absent.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthSetupError;
use super::acl::ChannelAcl;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    sha256: String,
    identity: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    tier: Option<String>,
}

/// One API key's grant.
#[derive(Debug, Clone)]
pub struct ApiKeyGrant {
    pub identity: std::sync::Arc<str>,
    pub tier: Option<String>,
    pub acl: ChannelAcl,
}

/// A loaded API key file. Immutable; replace the whole set to reload.
#[derive(Debug, Default)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
    grants: Vec<ApiKeyGrant>,
    buckets: HashMap<[u8; 8], Vec<usize>>,
}

impl ApiKeys {
    /// Reads and validates `path`. Errors name the file and the entry index.
    pub fn load(path: impl AsRef<Path>) -> Result<ApiKeys, AuthSetupError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AuthSetupError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        ApiKeys::parse(&text, &path.display().to_string())
    }

    /// Parses the file text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ApiKeys, AuthSetupError> {
        let file: FileFormat = toml::from_str(text).map_err(|e| {
            AuthSetupError::invalid(format!("auth.api_keys.file ({origin})"), e.to_string())
        })?;
        let mut keys = ApiKeys::default();
        for (i, e) in file.key.into_iter().enumerate() {
            let name = |f: &str| format!("{origin}: key[{i}].{f}");
            let hash = decode_hex32(&e.sha256)
                .ok_or_else(|| AuthSetupError::invalid(name("sha256"), "must be 64 hex digits"))?;
            if e.identity.is_empty() {
                return Err(AuthSetupError::invalid(
                    name("identity"),
                    "must not be empty",
                ));
            }
            if keys.hashes.contains(&hash) {
                return Err(AuthSetupError::invalid(name("sha256"), "duplicate key"));
            }
            let id: std::sync::Arc<str> = e.identity.as_str().into();
            let acl = ChannelAcl::compile(e.channels.iter().map(String::as_str), |k| {
                matches!(k, "sub" | "identity").then(|| e.identity.clone())
            });
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&hash[..8]);
            keys.buckets
                .entry(prefix)
                .or_default()
                .push(keys.hashes.len());
            keys.hashes.push(hash);
            keys.grants.push(ApiKeyGrant {
                identity: id,
                tier: e.tier,
                acl,
            });
        }
        Ok(keys)
    }

    /// The grant for a presented key, if any.
    pub fn lookup(&self, presented: &str) -> Option<&ApiKeyGrant> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&digest[..8]);
        let mut found = None;
        for &i in self.buckets.get(&prefix)? {
            if bool::from(self.hashes[i].ct_eq(&digest)) {
                found = Some(i);
            }
        }
        found.map(|i| &self.grants[i])
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when the file holds no key.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Lowercase or uppercase hex of a SHA-256 digest, e.g. for writing key files.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_hash() {
        let text = format!(
            "[[key]]\nsha256 = \"{}\"\nidentity = \"gw-1\"\nchannels = [\"gateway:{{sub}}\"]\ntier = \"pro\"\n",
            sha256_hex("secret-key-1")
        );
        let keys = ApiKeys::parse(&text, "test").unwrap();
        let g = keys.lookup("secret-key-1").unwrap();
        assert_eq!(&*g.identity, "gw-1");
        assert!(g.acl.allows("gateway:gw-1"));
        assert!(!g.acl.allows("gateway:gw-2"));
        assert!(keys.lookup("secret-key-2").is_none());
        let bad = ApiKeys::parse("[[key]]\nsha256 = \"zz\"\nidentity = \"a\"\n", "f").unwrap_err();
        assert!(bad.to_string().contains("key[0].sha256"), "{bad}");
    }
}
