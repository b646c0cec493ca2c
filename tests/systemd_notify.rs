//! The real binary speaks the systemd notify protocol: READY=1 once listeners are bound and
//! Kafka (the embedded cluster) is assigned, WATCHDOG=1 while the reactors turn, STOPPING=1 on
//! SIGTERM, then a clean exit 0.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn recv_until(sock: &UnixDatagram, want: &str, within: Duration, seen: &mut Vec<String>) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn binary_notifies_ready_watchdog_and_stopping_then_exits_zero() {
    let dir = std::env::temp_dir().join(format!("fanline-notify-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanline"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "600000")
        .env("FANLINE_SERVER_DRAIN_MS", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fanline");
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", Duration::from_secs(30), &mut seen);
    let watchdog = ready && recv_until(&sock, "WATCHDOG=1", Duration::from_secs(5), &mut seen);
    // SIGTERM through kill(1), as systemd would send it.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = recv_until(&sock, "STOPPING=1", Duration::from_secs(10), &mut seen);
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ready, "READY=1 expected; got {seen:?}");
    assert!(watchdog, "WATCHDOG=1 expected; got {seen:?}");
    assert!(stopping, "STOPPING=1 expected; got {seen:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit 0 after drain");
}
