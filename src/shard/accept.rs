//! The accept path's defences (SPEC §5, issue #10):
//!
//! - [`admit_head`]: an accepted connection holds a slot under the connection caps while its
//!   request head is unfinished, or is refused at once.
//! - [`FdReserve`]: one descriptor held back for the moment the process runs out of them
//!   (EMFILE/ENFILE). Accept then fails while the backlog stays pending, and with
//!   edge-triggered readiness nothing would retry it until a new client arrives. Instead the
//!   reserve is closed, one pending connection is accepted, answered 503 (best effort) and
//!   closed, the reserve reopened, and so on until the backlog is empty: it is shed in the
//!   same turn. When even that fails the shard retries after [`RETRY`], arrival or not.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::Ctx;

/// How soon a shard retries accepting after running out of descriptors with no reserve.
pub(super) const RETRY: Duration = Duration::from_millis(100);

/// Whether an accept error means the process (or system) is out of descriptors.
pub(super) fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What shedding through the reserve did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shed {
    /// One pending connection was accepted and closed: accept again.
    One,
    /// Nothing was pending.
    BacklogEmpty,
    /// No reserve, or still out of descriptors: retry at `retry_at`.
    NotNow,
}

/// The reserve descriptor (`/dev/null`), and when to retry accepting without one.
#[derive(Debug)]
pub(super) struct FdReserve {
    file: Option<File>,
    pub(super) retry_at: Option<Instant>,
    /// Connections shed since the last warning (logged at most once a second).
    shed: u64,
    warned_at: Option<Instant>,
}

impl FdReserve {
    pub(super) fn new() -> FdReserve {
        FdReserve {
            file: File::open("/dev/null").ok(),
            retry_at: None,
            shed: 0,
            warned_at: None,
        }
    }

    /// Frees the reserve, accepts one pending connection (`accept`: one `accept(2)` on the
    /// listener) and closes it (a plain one is answered 503 first), then takes the reserve
    /// back.
    pub(super) fn shed(
        &mut self,
        accept: impl FnOnce() -> io::Result<(TcpStream, SocketAddr)>,
        tls: bool,
        ctx: &Ctx,
    ) -> Shed {
        let Some(file) = self.file.take() else {
            self.file = File::open("/dev/null").ok();
            return Shed::NotNow;
        };
        drop(file);
        let accepted = accept();
        let outcome = match accepted {
            Ok((mut stream, _)) => {
                if !tls {
                    let resp = crate::http::error_response(
                        503,
                        "fd_limit",
                        "out of file descriptors",
                        &[("Retry-After", "5")],
                    );
                    let _ = io::Write::write(&mut stream, &resp);
                }
                ctx.metrics().reject("fd_limit");
                self.shed += 1;
                Shed::One
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Shed::BacklogEmpty,
            Err(_) => Shed::NotNow,
        };
        self.file = File::open("/dev/null").ok();
        if self.shed > 0
            && self
                .warned_at
                .is_none_or(|t| ctx.now >= t + Duration::from_secs(1))
        {
            tracing::warn!(
                shard = ctx.id,
                shed = self.shed,
                "out of file descriptors: pending connections answered 503 and closed"
            );
            self.warned_at = Some(ctx.now);
            self.shed = 0;
        }
        outcome
    }
}

/// The slot an accepted connection's unfinished head holds under the connection caps
/// ([`crate::auth::ConnLimiter::try_acquire_head`]; a trusted proxy's address is not capped
/// per IP). Refused: answered 503/429 at once (plain listener; best effort, the socket is
/// new so its buffer is empty) and closed, so half-sent heads never hold more descriptors
/// than the caps allow.
pub(super) fn admit_head(
    ctx: &Ctx,
    stream: &mut TcpStream,
    remote: SocketAddr,
    tls: bool,
) -> Option<crate::auth::HeadSlot> {
    let proxy = crate::auth::in_cidrs(ctx.shared.auth.load().trusted_proxies(), remote.ip());
    match ctx.shared.limiter.try_acquire_head(remote.ip(), proxy) {
        Ok(slot) => Some(slot),
        Err(r) => {
            let reason = match r {
                crate::auth::LimitReject::PendingHeads => "pending_heads",
                crate::auth::LimitReject::MaxConnections => "max_connections",
                _ => "per_ip_limit",
            };
            ctx.metrics().reject(reason);
            tracing::debug!(remote = %remote, reason, "connection refused at accept");
            if !tls {
                let retry = r.retry_after_s().to_string();
                let resp = crate::http::error_response(
                    r.status(),
                    reason,
                    r.label(),
                    &[("Retry-After", &retry)],
                );
                let _ = std::io::Write::write(stream, &resp);
            }
            None
        }
    }
}
