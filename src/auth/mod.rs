//! Authentication and authorization: credentials, JWT, API keys, channel ACL.
//! Pure functions, no I/O on the connection path.

use serde::{Deserialize, Serialize};

/// `[auth]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Connections without credentials are allowed (anonymous identity, every channel).
    pub anonymous: bool,
}
