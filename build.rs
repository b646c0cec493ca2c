//! Embeds the git commit the binary was built from (`BUILD_GIT_COMMIT`, "unknown" outside a
//! git checkout) for `GET /v1/version` and `fanline_build_info`. Not `FANLINE_*`: cargo puts
//! the variable in the environment of `cargo test`/`cargo run`, where the binary would read it
//! as a config key. Reruns only when HEAD moves
//! (not on every source edit, which would rebuild the crate for nothing).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUILD_GIT_COMMIT");
    let commit = std::env::var("BUILD_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    // HEAD itself (a checkout of another branch) and the branch it points at (a new commit).
    let mut watch = vec!["HEAD".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--git-path", &w])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
