//! The example config installed by scripts/install.sh must load with the real schema
//! (`deny_unknown_fields` everywhere), so a renamed setting fails here, not on a user's box.

use std::path::Path;

#[test]
fn example_config_in_scripts_loads_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fanline.toml");
    let cfg = fanline::config::Config::load(Some(&path), Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(cfg.server.admin_listen.to_string(), "127.0.0.1:9091");
    assert_eq!(cfg.limits.outbox_frames, 1000);
}
