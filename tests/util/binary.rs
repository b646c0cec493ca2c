//! The real `fanline` binary (with a config file, or under a wrapper such as `prlimit`) on
//! OS-chosen loopback ports, its JSON log captured; killed (and its file removed) on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Ws;

pub struct Gateway {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// Every JSON log line so far.
    pub log: Arc<Mutex<Vec<Value>>>,
    /// The config file `--config` names (removed on drop).
    pub file: Option<PathBuf>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn config_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fanline-bin-{}-{tag}.toml", std::process::id()))
}

pub fn start(tag: &str, file_text: &str) -> Gateway {
    let file = config_path(tag);
    std::fs::write(&file, file_text).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanline"));
    cmd.arg("--config").arg(&file).env_remove("RUST_LOG");
    spawn(cmd, Some(file))
}

/// Runs `cmd` (the binary, or a wrapper such as `prlimit … --` that execs it) with OS-chosen
/// loopback ports, one shard and JSON logs appended, and waits until it is ready. `file` is
/// removed on drop.
pub fn spawn(mut cmd: Command, file: Option<PathBuf>) -> Gateway {
    let mut child = cmd
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fanline");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["fields"]["message"] == "fanline started" {
                let _ = tx.send(v.clone());
            }
            sink.lock().unwrap().push(v);
        }
    });
    let mut gw = Gateway {
        child,
        public: "127.0.0.1:1".parse().unwrap(),
        admin: "127.0.0.1:1".parse().unwrap(),
        log,
        file,
    };
    let started = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a `fanline started` line within 30 s");
    let addr = |k: &str| -> SocketAddr {
        started["fields"][k]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("address in the started line")
    };
    gw.public = addr("listen");
    gw.admin = addr("admin");
    let end = Instant::now() + Duration::from_secs(20);
    while super::http(gw.admin, "GET", "/health/ready", None).0 != 200 {
        assert!(Instant::now() < end, "ready within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

impl Gateway {
    pub fn lines(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|v| pred(v)).count()
    }

    /// Rewrites the file, sends SIGHUP, and waits until a line matching `done` appears once
    /// more than before.
    pub fn reload(&self, file_text: &str, done: impl Fn(&Value) -> bool) {
        let before = self.lines(&done);
        let file = self.file.as_ref().expect("started with a config file");
        std::fs::write(file, file_text).expect("rewrite config");
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(st.success());
        let end = Instant::now() + Duration::from_secs(10);
        while self.lines(&done) <= before {
            assert!(Instant::now() < end, "reload outcome logged within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn publish(&self, channel: &str, n: u64) {
        let body = json!({"channel": channel, "data": {"n": n}}).to_string();
        let (status, answer) = super::http(self.admin, "POST", "/v1/publish", Some(&body));
        assert_eq!(status, 202, "{answer}");
    }

    pub async fn connect(&self) -> Ws {
        super::connect_url(&format!("ws://{}/v1/ws", self.public)).await
    }
}
