//! Build information as operators read it: `GET /v1/version`, and the gauges `/metrics`
//! takes from the server state (`fanline_build_info`, `fanline_ready`,
//! `fanline_connections_max`).

use std::fmt::Write as _;

use crate::state::ServerState;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (build.rs; "unknown" outside a checkout).
pub const GIT_COMMIT: &str = env!("BUILD_GIT_COMMIT");
/// The `GET /v1/version` body (`backend`: the shards' I/O backend in use).
pub fn version(shared: &ServerState) -> serde_json::Value {
    serde_json::json!({"version": VERSION, "git_commit": GIT_COMMIT, "backend": shared.io_backend})
}

/// The state gauges of `/metrics`.
pub fn render_metrics(shared: &ServerState, out: &mut String) {
    let ready = i32::from(shared.not_ready_reason().is_none());
    let backend = shared.io_backend;
    let _ = writeln!(
        out,
        "# HELP fanline_build_info Build information (value 1).\n# TYPE fanline_build_info gauge\n\
         fanline_build_info{{version=\"{VERSION}\",commit=\"{GIT_COMMIT}\",backend=\"{backend}\"}} 1\n\
         # HELP fanline_ready 1 when /health/ready answers 200.\n# TYPE fanline_ready gauge\n\
         fanline_ready {ready}\n\
         # HELP fanline_connections_max The limits.max_connections cap.\n# TYPE fanline_connections_max gauge\n\
         fanline_connections_max {}",
        shared.cfg.limits.max_connections
    );
}
