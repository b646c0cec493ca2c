//! Sends: one writev (or send) per connection at a time, holding `Bytes` references to the
//! frames until the last completion; a short write is resubmitted from where it stopped.

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::opcode;
use io_uring::types::Fd;

use super::{OP_SEND, SPARE_SENDS, Send, SlotState, Uring, ud};
use crate::io::IOV_MAX;
use crate::io::backend::{Event, Sent};

/// An in-flight writev: the frames it points into and the iovecs (kept alive until the last
/// completion, whatever happens to the connection meanwhile).
#[derive(Debug, Default)]
pub(super) struct SendBuf {
    key: usize,
    generation: u32,
    fd: RawFd,
    frames: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// First iovec not fully written.
    first: usize,
}

// SAFETY: the iovecs point into `frames`, owned by the same value; only the shard thread owning
// the driver touches it.
unsafe impl std::marker::Send for SendBuf {}

impl Uring {
    pub fn send<'a>(
        &mut self,
        key: usize,
        fd: RawFd,
        head: usize,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> io::Result<Sent> {
        let Some(slot) = self.slots.get(key).copied() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let SlotState::Open { send, .. } = slot.state else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        if send != Send::Idle {
            return Ok(Sent::Wait(0));
        }
        let mut b = self.spare.pop().unwrap_or_default();
        let mut total = 0;
        for (i, f) in frames.take(IOV_MAX).enumerate() {
            if total >= self.max_send_bytes {
                break;
            }
            let f = if i == 0 {
                f.slice(head.min(f.len())..)
            } else {
                f.clone()
            };
            if !f.is_empty() {
                total += f.len();
                b.frames.push(f);
            }
        }
        if total == 0 {
            self.spare.push(b);
            return Ok(Sent::Ready(0));
        }
        b.iov.extend(b.frames.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        }));
        b.key = key;
        b.generation = slot.generation;
        b.fd = fd;
        b.first = 0;
        let idx = self.sends.insert(b);
        if let SlotState::Open { send, .. } = &mut self.slots[key].state {
            *send = Send::InFlight(idx as u32);
        }
        self.submit_send(idx);
        Ok(Sent::Wait(total))
    }

    pub(super) fn submit_send(&mut self, idx: usize) {
        let Some(b) = self.sends.get(idx) else {
            return;
        };
        let rest = &b.iov[b.first..];
        // One buffer: plain send (cheaper in the kernel than importing an iovec array).
        let e = if let [one] = rest {
            opcode::Send::new(Fd(b.fd), one.iov_base.cast(), one.iov_len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            opcode::Writev::new(Fd(b.fd), rest.as_ptr(), rest.len() as u32).build()
        }
        .user_data(ud(OP_SEND, 0, idx));
        self.push(e);
        self.fd_entries_queued = true;
    }

    /// Frees send `idx` and, when its connection is still the same one, marks it idle.
    /// Returns the connection key if so.
    pub(super) fn finish_send(&mut self, idx: usize) -> Option<usize> {
        let mut b = self.sends.try_remove(idx)?;
        let (key, generation) = (b.key, b.generation);
        b.frames.clear();
        b.iov.clear();
        if self.spare.len() < SPARE_SENDS {
            self.spare.push(b);
        }
        let slot = self.slots.get_mut(key)?;
        match &mut slot.state {
            SlotState::Open { send, .. }
                if slot.generation == generation && *send == Send::InFlight(idx as u32) =>
            {
                *send = Send::Idle;
                Some(key)
            }
            _ => None,
        }
    }
    pub(super) fn on_send(&mut self, idx: usize, res: i32, on: &mut impl FnMut(Event<'_>) -> bool) {
        let Some(b) = self.sends.get_mut(idx) else {
            return;
        };
        let live = matches!(self.slots.get(b.key),
            Some(s) if s.generation == b.generation && matches!(s.state, SlotState::Open { .. }));
        if res > 0 && live {
            let mut n = res as usize;
            while n > 0 && b.first < b.iov.len() {
                let v = &mut b.iov[b.first];
                if n >= v.iov_len {
                    n -= v.iov_len;
                    b.first += 1;
                } else {
                    // SAFETY: `n < iov_len`, so the new base stays inside the same frame.
                    v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                    v.iov_len -= n;
                    n = 0;
                }
            }
            if b.first < b.iov.len() {
                self.stats.partial_sends += 1;
                self.submit_send(idx); // partial: the rest
                return;
            }
        }
        let failed = res <= 0 && live;
        if res == -libc::EINTR && live {
            self.submit_send(idx);
            return;
        }
        if let Some(key) = self.finish_send(idx) {
            if failed {
                on(Event::Closed { key });
            } else {
                on(Event::Writable { key });
            }
        }
    }
}
