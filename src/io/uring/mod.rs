//! The io_uring backend: one ring per shard, driven by the `io-uring` crate directly (no
//! runtime: the shard's turn is the event loop, tokio-uring's would fight it).
//!
//! - Accept: one multishot accept per listener; re-armed when the kernel ends it.
//! - Receive: one multishot recv per connection with buffers picked from a provided-buffer ring
//!   ([`bufring`]), so an idle connection holds no read buffer. `ENOBUFS` (ring empty) ends the
//!   multishot; it is re-armed after the turn's completions gave their buffers back.
//! - Send: one writev per connection at a time, holding `Bytes` references to the frames (the
//!   caller's queue drops them at once). Every send queued in a turn goes to the kernel with the
//!   next [`Uring::poll`]: one `io_uring_enter` for the whole turn. A short write is resubmitted
//!   from where it stopped; completion reports [`Event::Writable`].
//! - Close: [`Uring::deregister`] bumps the slot's generation and cancels its recv and send.
//!   `user_data` carries (op, generation, key), a send's entry lives in its own slab until its
//!   last completion, so no completion ever touches a reused slot or freed memory.
//! - Wake: a read armed on the shard's eventfd. Tick: the wait's timeout (`EXT_ARG`).
//! - CQ overflow: the ring is set up with a CQ 4× the SQ and `IORING_FEAT_NODROP`; when the
//!   kernel flags an overflow the poll flushes it with another enter and reaps again.

mod bufring;
mod complete;
mod send;
#[cfg(test)]
mod tests;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};
use slab::Slab;

use super::Waker;
use super::backend::Event;
use bufring::BufRing;
use send::SendBuf;

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
const BGID: u16 = 0;
/// Pause before re-arming an accept that failed (EMFILE …), so it does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Reap rounds per poll (each drains the CQ; more only while the kernel reports overflow).
const MAX_REAP_ROUNDS: usize = 64;
/// Spare send entries kept for reuse.
const SPARE_SENDS: usize = 256;

/// Sizes of one shard's ring.
#[derive(Debug, Clone, Copy)]
pub struct UringOptions {
    pub sq_entries: u32,
    /// Completion queue size (≥ sq_entries); overflow beyond it is kept by the kernel.
    pub cq_entries: u32,
    /// Provided receive buffers (power of two) and their size.
    pub bufs: u16,
    pub buf_size: u32,
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions are run only when the polling thread
    /// enters the kernel to reap (fewer interruptions). The ring starts disabled; the thread
    /// that will poll it calls [`Uring::start`]. Off by default: at 10k × 10/s it made no
    /// difference beyond run-to-run noise (four alternating runs, perf/RESULTS.md).
    pub defer_taskrun: bool,
    /// Most bytes one send takes off a connection's queue (at least one frame). What it took
    /// is committed: the caller's queue (its caps, drop-oldest, slow-consumer clock) only sees
    /// the rest, so this plays the part the socket buffer plays under epoll and keeps a slow
    /// reader's backlog where the outbox can drop from it.
    pub max_send_bytes: usize,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            // 2,048 sends per enter; a turn with more takes one enter per 2,048.
            sq_entries: 2048,
            cq_entries: 8192,
            // 256 KiB of receive buffers per shard, whatever the number of connections
            // (clients send small frames; a 16 KiB request head takes 8 of them).
            bufs: 128,
            buf_size: 2048,
            defer_taskrun: false,
            max_send_bytes: 64 * 1024,
        }
    }
}

fn ud(op: u64, generation: u32, key: usize) -> u64 {
    (op << 56) | ((generation as u64 & 0xff_ffff) << 32) | (key as u64 & 0xffff_ffff)
}

fn split_ud(u: u64) -> (u64, u32, usize) {
    (
        u >> 56,
        ((u >> 32) & 0xff_ffff) as u32,
        (u & 0xffff_ffff) as usize,
    )
}

/// A connection slot, indexed by the caller's key.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Bumped at every deregister; completions carrying an older one are stale.
    generation: u32,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Open { fd: RawFd, recv: Recv, send: Send },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Armed,
    /// Ended (ENOBUFS, or no `F_MORE`): re-arm after this poll's completions.
    Rearm,
    /// EOF or error reported; nothing more to read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    Idle,
    /// A writev is in flight; its entry is `sends[idx]`.
    InFlight(u32),
}

#[derive(Debug)]
enum Listen {
    Armed,
    RetryAt(Instant),
}

pub struct Uring {
    // Field order is drop order: the ring goes before the memory the kernel may touch.
    ring: IoUring,
    bufs: BufRing,
    slots: Vec<Slot>,
    sends: Slab<SendBuf>,
    spare: Vec<SendBuf>,
    listeners: Vec<Option<(TcpListener, Listen)>>,
    waker: Waker,
    wake_buf: Box<u64>,
    /// SQEs that found the SQ full and the kernel busy; pushed first at the next poll.
    backlog: Vec<squeue::Entry>,
    rearm: Vec<usize>,
    /// The SQ holds entries naming a connection's fd by number. The kernel resolves the number
    /// when it takes the entry, so they must be submitted before the caller closes any fd:
    /// a later socket could get the same number.
    fd_entries_queued: bool,
    /// [`Uring::start`] ran: entries are submitted (only from the polling thread).
    started: bool,
    defer_taskrun: bool,
    max_send_bytes: usize,
    pub stats: UringStats,
}

/// Counters of the driver's less common paths (tests and metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct UringStats {
    /// `io_uring_enter` calls made.
    pub enters: u64,
    /// Short writes resubmitted from where they stopped.
    pub partial_sends: u64,
    /// Multishot receives re-armed (ENOBUFS or ended by the kernel).
    pub recv_rearms: u64,
    /// Extra enters to flush completions the kernel held back (CQ overflow).
    pub overflow_flushes: u64,
    /// Completions the kernel reported as dropped (stays 0 with `FEAT_NODROP`).
    pub dropped_cqes: u32,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("slots", &self.slots.len())
            .field("sends_in_flight", &self.sends.len())
            .finish()
    }
}

impl Uring {
    pub fn new(waker: &Waker, o: UringOptions) -> io::Result<Uring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(o.cq_entries.max(o.sq_entries))
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all();
        if o.defer_taskrun {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_r_disabled();
        }
        let ring = b.build(o.sq_entries)?;
        // Multishot receive needs 6.0; buffer rings, multishot accept 5.19; NODROP, EXT_ARG.
        if !ring.params().is_feature_nodrop()
            || !ring.params().is_feature_ext_arg()
            || kernel_version() < (6, 0)
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let bufs = BufRing::new(o.bufs, o.buf_size, BGID)?;
        // SAFETY: the ring memory lives in `bufs`, which the driver drops only after
        // unregistering it (Drop below) and after the io_uring itself.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring_addr(),
                bufs.count(),
                BGID,
                0,
            )?
        };
        let mut u = Uring {
            ring,
            bufs,
            slots: Vec::new(),
            sends: Slab::new(),
            spare: Vec::new(),
            listeners: Vec::new(),
            waker: waker.clone(),
            wake_buf: Box::new(0),
            backlog: Vec::new(),
            rearm: Vec::new(),
            fd_entries_queued: false,
            stats: UringStats::default(),
            started: false,
            defer_taskrun: o.defer_taskrun,
            max_send_bytes: o.max_send_bytes.max(1),
        };
        u.arm_wake();
        Ok(u)
    }

    /// Submits what was queued so far from the calling thread, which must be the one that
    /// polls: requests belong to the task that submitted them (their completion work runs
    /// there, and would interrupt that thread's blocking calls), and a `DEFER_TASKRUN` ring is
    /// bound to it. Nothing is submitted before. Idempotent; `poll` calls it if the owner did
    /// not.
    pub fn start(&mut self) -> io::Result<()> {
        if !self.started {
            if self.defer_taskrun {
                self.ring.submitter().register_enable_rings()?;
            }
            self.started = true;
            self.submit_now()?;
        }
        Ok(())
    }

    fn push(&mut self, e: squeue::Entry) {
        if !self.backlog.is_empty() {
            self.backlog.push(e);
            return;
        }
        // SAFETY (for every push through here): each entry's pointers (iovecs, the wake
        // buffer) point into memory the driver keeps alive until that entry's last completion.
        if unsafe { self.ring.submission().push(&e) }.is_ok() {
            return;
        }
        // SQ full: hand the batch to the kernel now and retry once.
        let _ = self.submit_now();
        // SAFETY: as above.
        if unsafe { self.ring.submission().push(&e) }.is_err() {
            self.backlog.push(e);
        }
    }

    /// `io_uring_enter` without waiting; every queued entry has its fd resolved afterwards.
    fn submit_now(&mut self) -> io::Result<usize> {
        if !self.started {
            return Ok(0);
        }
        self.stats.enters += 1;
        let r = self.ring.submit();
        if self.ring.submission().is_empty() {
            self.fd_entries_queued = false;
        }
        r
    }

    /// Submits without waiting, but with `GETEVENTS`: under `DEFER_TASKRUN` completions of
    /// requests that had to wait (a send on a full socket, a receive) are only run by such an
    /// enter, and a busy shard that never waits would otherwise see them late.
    fn submit_and_reap(&mut self) -> io::Result<usize> {
        let n = self.ring.submission().len() as u32;
        let flags = io_uring::EnterFlags::GETEVENTS.bits();
        // SAFETY: no argument pointer is passed; `n` entries are queued in the SQ.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(n, 0, flags, None)
        }
    }

    fn flush_backlog(&mut self) {
        let backlog = std::mem::take(&mut self.backlog);
        for e in backlog {
            self.push(e);
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(Fd(self.waker.raw_fd()), buf.cast(), 8)
            .build()
            .user_data(ud(OP_WAKE, 0, 0));
        self.push(e);
    }

    fn arm_accept(&mut self, idx: usize) {
        let Some(Some((l, state))) = self.listeners.get_mut(idx) else {
            return;
        };
        *state = Listen::Armed;
        let e = opcode::AcceptMulti::new(Fd(l.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(ud(OP_ACCEPT, 0, idx));
        self.push(e);
    }

    fn arm_recv(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let SlotState::Open { fd, recv, .. } = &mut slot.state else {
            return;
        };
        if *recv == Recv::Done {
            return;
        }
        *recv = Recv::Armed;
        let e = opcode::RecvMulti::new(Fd(*fd), BGID).build().user_data(ud(
            OP_RECV,
            slot.generation,
            key,
        ));
        self.push(e);
        self.fd_entries_queued = true;
    }

    pub fn add_listener(&mut self, idx: usize, l: TcpListener) -> io::Result<()> {
        l.set_nonblocking(true)?;
        if self.listeners.len() <= idx {
            self.listeners.resize_with(idx + 1, || None);
        }
        self.listeners[idx] = Some((l, Listen::Armed));
        self.arm_accept(idx);
        Ok(())
    }

    pub fn accept_now(
        &mut self,
        idx: usize,
    ) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
        match self.listeners.get(idx) {
            Some(Some((l, _))) => l.accept(),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Re-arms the multishot accept on `idx` at the next poll when a failure ended it.
    pub fn retry_accept(&mut self, idx: usize) {
        if let Some(Some((_, state @ Listen::RetryAt(_)))) = self.listeners.get_mut(idx) {
            *state = Listen::RetryAt(Instant::now());
        }
    }

    pub fn close_listeners(&mut self) {
        for idx in 0..self.listeners.len() {
            if self.listeners[idx].take().is_some() {
                let e = opcode::AsyncCancel::new(ud(OP_ACCEPT, 0, idx))
                    .build()
                    .user_data(ud(OP_CANCEL, 0, 0));
                self.push(e);
            }
        }
    }

    pub fn register(&mut self, key: usize, fd: RawFd) -> io::Result<()> {
        if key > u32::MAX as usize {
            return Err(io::Error::other("connection key out of range"));
        }
        if self.slots.len() <= key {
            self.slots.resize(
                key + 1,
                Slot {
                    generation: 0,
                    state: SlotState::Free,
                },
            );
        }
        self.slots[key].state = SlotState::Open {
            fd,
            recv: Recv::Armed,
            send: Send::Idle,
        };
        self.arm_recv(key);
        Ok(())
    }

    /// Stops I/O on `key`. Entries still queued that name an fd are submitted first (at most
    /// one enter per turn), so the caller may close the fd as soon as this returns.
    pub fn deregister(&mut self, key: usize) {
        if self.fd_entries_queued {
            let _ = self.submit_now();
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let SlotState::Open { recv, send, .. } = slot.state else {
            return;
        };
        let old = slot.generation;
        slot.generation = (slot.generation + 1) & 0xff_ffff;
        slot.state = SlotState::Free;
        if recv != Recv::Done {
            let e = opcode::AsyncCancel::new(ud(OP_RECV, old, key))
                .build()
                .user_data(ud(OP_CANCEL, 0, 0));
            self.push(e);
        }
        if let Send::InFlight(idx) = send {
            let e = opcode::AsyncCancel::new(ud(OP_SEND, 0, idx as usize))
                .build()
                .user_data(ud(OP_CANCEL, 0, 0));
            self.push(e);
        }
    }

    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        self.start()?;
        let now = Instant::now();
        for idx in 0..self.listeners.len() {
            if let Some(Some((_, Listen::RetryAt(at)))) = self.listeners.get(idx)
                && *at <= now
            {
                self.arm_accept(idx);
            }
        }
        self.flush_backlog();
        let ready = !self.ring.completion().is_empty();
        self.stats.enters += 1;
        self.fd_entries_queued = false;
        let r = match timeout {
            _ if ready => self.submit_and_reap(),
            Some(t) if t.is_zero() => self.submit_and_reap(),
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.reap(&mut on);
        Ok(())
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if !self.started {
            return; // nothing was ever submitted
        }
        // Nothing in flight may outlive the memory it points into: cancel it all, wait, then
        // take the buffer ring back before `bufs` frees it.
        let _ = self.ring.submit();
        let ts = Timespec::new().sec(1);
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(ts), CancelBuilder::any());
        let _ = self.ring.submitter().unregister_buf_ring(self.bufs.bgid);
    }
}

/// (major, minor) of the running kernel; (0, 0) when unknown.
fn kernel_version() -> (u32, u32) {
    let v = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = v
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
