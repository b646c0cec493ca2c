//! JWKS key sets from a file or an HTTPS URL.
//!
//! Fetched once at startup (a failing `file://` is a startup error; a failing `https://` is
//! logged and the set starts empty, so an identity provider outage does not stop the gateway).
//! A token with an unknown `kid` asks for a refetch, at most once per
//! [`REFETCH_MIN_INTERVAL`] per set:
//! - `file://`: refetched inline (a local read of a small file) and the token retried;
//! - `https://`: a background thread (one per HTTPS set, exits when the set is dropped) fetches,
//!   so no shard ever waits on the network; the token is rejected and the client's retry
//!   succeeds once the new set is in.
//!
//! A failed or unparsable refetch keeps the last good set. The set is read through `arc-swap`:
//! verification never takes a lock; only the refetch rate limiter does.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::AuthSetupError;

/// Smallest interval between two refetches triggered by unknown `kid`s.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// HTTPS fetch timeout (whole request).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable key of a set.
pub(crate) struct JwkKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it states one: the token's alg must then equal it.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Https(String),
}

/// A JWKS source and its last good key set.
pub(crate) struct JwksStore {
    source: Source,
    family: AlgorithmFamily,
    keys: ArcSwap<Vec<JwkKey>>,
    last_refetch: Mutex<Option<Instant>>,
    wake: Option<SyncSender<()>>,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore")
            .field("source", &self.source)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl JwksStore {
    /// `file://` store: the initial read must succeed.
    pub fn file(path: &str, family: AlgorithmFamily, name: &str) -> Result<Self, AuthSetupError> {
        let source = Source::File(PathBuf::from(path));
        let keys = fetch(&source, family).map_err(|why| AuthSetupError::invalid(name, why))?;
        Ok(JwksStore {
            source,
            family,
            keys: ArcSwap::from_pointee(keys),
            last_refetch: Mutex::new(None),
            wake: None,
        })
    }

    /// `https://` store with its background refetch thread.
    pub fn https(url: &str, family: AlgorithmFamily, name: &str) -> Arc<Self> {
        let source = Source::Https(url.to_string());
        let keys = fetch(&source, family).unwrap_or_else(|why| {
            tracing::warn!(key = name, url, %why, "JWKS fetch failed at startup; starting with no keys");
            Vec::new()
        });
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let store = Arc::new(JwksStore {
            source,
            family,
            keys: ArcSwap::from_pointee(keys),
            last_refetch: Mutex::new(None),
            wake: Some(tx),
        });
        let weak: Weak<JwksStore> = Arc::downgrade(&store);
        let spawned = std::thread::Builder::new()
            .name("fanline-jwks".into())
            .spawn(move || {
                // Ends when the store (and with it the sender) is dropped.
                while rx.recv().is_ok() {
                    let Some(store) = weak.upgrade() else { break };
                    store.refetch_now();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(%e, "cannot start the JWKS refetch thread; refetch disabled");
        }
        store
    }

    /// The current key set (lock-free).
    pub fn current(&self) -> arc_swap::Guard<Arc<Vec<JwkKey>>> {
        self.keys.load()
    }

    /// Asks for a refetch after an unknown `kid`. Returns true when the set was refetched
    /// inline (file source) and a retry may succeed.
    pub fn request_refetch(&self, now: Instant) -> bool {
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.saturating_duration_since(t) < REFETCH_MIN_INTERVAL) {
                return false;
            }
            *last = Some(now);
        }
        match &self.wake {
            Some(tx) => {
                if let Err(TrySendError::Disconnected(())) = tx.try_send(()) {
                    tracing::warn!("JWKS refetch thread is gone");
                }
                false
            }
            None => self.refetch_now(),
        }
    }

    /// Fetches and swaps in the new set; keeps the old one on failure.
    fn refetch_now(&self) -> bool {
        match fetch(&self.source, self.family) {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "JWKS refetched");
                self.keys.store(Arc::new(keys));
                true
            }
            Err(why) => {
                tracing::warn!(source = ?self.source, %why, "JWKS refetch failed; keeping the last good set");
                false
            }
        }
    }
}

fn fetch(source: &Source, family: AlgorithmFamily) -> Result<Vec<JwkKey>, String> {
    let text = match source {
        Source::File(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        Source::Https(url) => fetch_https(url)?,
    };
    parse_jwks(&text, family)
}

fn fetch_https(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .https_only(true)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    resp.body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// Parses a JWKS document, keeping the keys of `family` that jsonwebtoken can use
/// (others, e.g. encryption keys or other key types, are skipped).
pub(crate) fn parse_jwks(text: &str, family: AlgorithmFamily) -> Result<Vec<JwkKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::new();
    for jwk in &set.keys {
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => match key_alg(ka) {
                Some(a) => Some(a),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() != family || alg.is_some_and(|a| a.family() != family) {
            continue;
        }
        out.push(JwkKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(out)
}

/// Signature algorithms only (a JWKS may also list encryption algorithms).
fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    super::config::parse_alg(&ka.to_string())
}
