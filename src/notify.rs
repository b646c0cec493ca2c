//! sd_notify client: tells systemd (or any supervisor speaking the protocol) about readiness,
//! shutdown, liveness and status, with no dependency beyond std.
//!
//! Protocol (sd_notify(3)): one datagram of `KEY=VALUE\n` lines sent to the `AF_UNIX`
//! `SOCK_DGRAM` socket named in `$NOTIFY_SOCKET`. A name starting with `@` is a Linux abstract
//! socket (the `@` stands for the leading NUL byte).
//!
//! Invariants: every function is a no-op when `$NOTIFY_SOCKET` is unset or empty, never panics,
//! and never blocks for long (a datagram send to a local socket). The named helpers log a
//! failure at debug level and carry on; [`send`] returns it.
//! The environment is read on every call (cheap next to a watchdog interval of seconds), so
//! tests can point it at their own socket.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// `READY=1`: listeners are bound and the ingest is assigned. Call once.
pub fn ready() {
    report(send("READY=1\n"));
}

/// `STOPPING=1`: draining has begun.
pub fn stopping() {
    report(send("STOPPING=1\n"));
}

/// `WATCHDOG=1`: the process is alive. Call at half of [`watchdog_interval`].
pub fn watchdog() {
    report(send("WATCHDOG=1\n"));
}

/// `STATUS=msg`: a one-line human-readable status shown by `systemctl status`.
/// Newlines in `msg` are replaced by spaces so they cannot inject other assignments.
pub fn status(msg: &str) {
    report(send(&status_line(msg)));
}

fn status_line(msg: &str) -> String {
    let clean: String = msg
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    format!("STATUS={clean}\n")
}

/// A failed notification is logged, never fatal: a supervisor that went away must not stop
/// the gateway (systemd restarts it if the watchdog really starves).
fn report(res: io::Result<()>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The watchdog timeout systemd expects (`$WATCHDOG_USEC`), or `None` when the watchdog is
/// off, malformed, zero, or meant for another process (`$WATCHDOG_PID` set and not ours).
/// Send [`watchdog`] at least every half of this interval.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// Pure part of [`watchdog_interval`], testable without touching the environment.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty())
        && pid.trim().parse::<u32>().ok()? != me
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends one notification datagram (`KEY=VALUE\n` lines) to `$NOTIFY_SOCKET`; `Ok(())` when
/// it is unset. For callers that want the error; the named helpers above log it instead.
pub fn send(state: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) if !path.is_empty() => send_to(&path.to_string_lossy(), state),
        _ => Ok(()),
    }
}

/// Sends `state` to the socket named `path` (filesystem path or `@abstract`).
fn send_to(path: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        send_abstract(&sock, name, state)
    } else {
        sock.send_to(state.as_bytes(), path).map(drop)
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets need Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_filesystem_socket() {
        let dir = std::env::temp_dir().join(format!("fanline-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let p = path.to_str().unwrap();
        send_to(p, "READY=1\n").unwrap();
        assert_eq!(recv(&server), "READY=1\n");
        send_to(p, "WATCHDOG=1\n").unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("fanline-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), "STOPPING=1\n").unwrap();
        assert_eq!(recv(&server), "STOPPING=1\n");
    }

    /// The only test that touches the process environment (tests run in parallel threads).
    #[test]
    fn public_api_uses_notify_socket_and_is_a_noop_without_it() {
        let name = format!("fanline-notify-env-{}", std::process::id());
        #[allow(unsafe_code)]
        // SAFETY: no other thread in this test binary reads or writes NOTIFY_SOCKET.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
        }
        ready();
        watchdog();
        send("READY=1\n").unwrap();

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
            }
            ready();
            assert_eq!(recv(&server), "READY=1\n");
            status("draining\nREADY=0");
            assert_eq!(recv(&server), "STATUS=draining READY=0\n");
            stopping();
            assert_eq!(recv(&server), "STOPPING=1\n");
            watchdog();
            assert_eq!(recv(&server), "WATCHDOG=1\n");
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                std::env::remove_var("NOTIFY_SOCKET");
            }
        }
    }

    #[test]
    fn watchdog_interval_honors_pid_and_value() {
        let d = Some(Duration::from_secs(20));
        assert_eq!(watchdog_interval_from(Some("20000000"), None, 7), d);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("7"), 7), d);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some(""), 7), d);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("abc"), None, 7), None);
    }
}
