//! systemd notify protocol (replaced by the full client on the bench branch).

/// READY=1.
pub fn ready() {}
/// STOPPING=1.
pub fn stopping() {}
