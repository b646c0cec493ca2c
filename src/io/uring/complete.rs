//! Completions: reaping the CQ (and what the kernel held back on overflow), accepts, receives.

use std::io;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use io_uring::cqueue;

use super::{
    ACCEPT_RETRY, Listen, MAX_REAP_ROUNDS, OP_ACCEPT, OP_RECV, OP_SEND, OP_WAKE, Recv, Slot,
    SlotState, Uring, split_ud,
};
use crate::io::backend::Event;

impl Uring {
    pub(super) fn reap(&mut self, on: &mut impl FnMut(Event<'_>) -> bool) {
        let mut batch: Vec<(u64, i32, u32)> = Vec::new();
        for _ in 0..MAX_REAP_ROUNDS {
            batch.clear();
            let mut cq = self.ring.completion();
            self.stats.dropped_cqes = cq.overflow();
            batch.extend(cq.by_ref().map(|c| (c.user_data(), c.result(), c.flags())));
            drop(cq);
            for &(u, res, flags) in &batch {
                self.complete(u, res, flags, on);
            }
            if self.ring.submission().cq_overflow() {
                // The kernel holds completions it could not post: an enter flushes them.
                self.stats.overflow_flushes += 1;
                let _ = self.submit_now();
                continue;
            }
            if batch.is_empty() {
                break;
            }
        }
        for key in std::mem::take(&mut self.rearm) {
            if let Some(Slot {
                state: SlotState::Open {
                    recv: Recv::Rearm, ..
                },
                ..
            }) = self.slots.get(key)
            {
                self.stats.recv_rearms += 1;
                self.arm_recv(key);
            }
        }
    }

    pub(super) fn complete(
        &mut self,
        u: u64,
        res: i32,
        flags: u32,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) {
        let (op, generation, key) = split_ud(u);
        match op {
            OP_ACCEPT => self.on_accept(key, res, flags, on),
            OP_RECV => self.on_recv(key, generation, res, flags, on),
            OP_SEND => self.on_send(key, res, on),
            OP_WAKE => self.arm_wake(),
            _ => {}
        }
    }

    pub(super) fn on_accept(
        &mut self,
        idx: usize,
        res: i32,
        flags: u32,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) {
        let live = matches!(self.listeners.get(idx), Some(Some(_)));
        if res >= 0 {
            // SAFETY: a successful accept completion hands us a new fd nobody else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
            if live && let Ok(remote) = stream.peer_addr() {
                on(Event::Accepted {
                    listener: idx,
                    stream,
                    remote,
                });
            }
        } else if res != -libc::ECANCELED && live {
            if !cqueue::more(flags)
                && let Some(Some((_, state))) = self.listeners.get_mut(idx)
            {
                // Re-armed by `retry_accept`, or after ACCEPT_RETRY if nobody asks.
                *state = Listen::RetryAt(Instant::now() + ACCEPT_RETRY);
            }
            on(Event::AcceptFailed {
                listener: idx,
                error: io::Error::from_raw_os_error(-res),
            });
            return;
        }
        if !cqueue::more(flags)
            && let Some(Some((_, state))) = self.listeners.get_mut(idx)
        {
            *state = if res >= 0 {
                Listen::RetryAt(Instant::now())
            } else {
                Listen::RetryAt(Instant::now() + ACCEPT_RETRY)
            };
        }
    }

    pub(super) fn on_recv(
        &mut self,
        key: usize,
        generation: u32,
        res: i32,
        flags: u32,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) {
        let bid = cqueue::buffer_select(flags);
        let current = matches!(self.slots.get(key),
            Some(s) if s.generation == generation && matches!(s.state, SlotState::Open { .. }));
        let mut ended = !cqueue::more(flags);
        if current {
            if res > 0 {
                let bytes = match bid {
                    Some(b) => self.bufs.get(b, res as usize),
                    None => &[],
                };
                if !on(Event::Data { key, bytes }) {
                    ended = false; // dying: no re-arm, deregister cancels it
                }
            } else if res == -libc::ENOBUFS {
                ended = true;
            } else if res != -libc::ECANCELED {
                // EOF (0) or a socket error.
                self.set_recv(key, Recv::Done);
                ended = false;
                on(Event::Closed { key });
            }
            if ended {
                self.set_recv(key, Recv::Rearm);
                self.rearm.push(key);
            }
        }
        if let Some(b) = bid {
            self.bufs.recycle(b);
        }
    }

    pub(super) fn set_recv(&mut self, key: usize, to: Recv) {
        if let Some(Slot {
            state: SlotState::Open { recv, .. },
            ..
        }) = self.slots.get_mut(key)
        {
            *recv = to;
        }
    }
}
