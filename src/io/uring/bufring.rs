//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): `count` buffers of `size` bytes shared
//! by every connection of a shard. The kernel picks a buffer when data arrives, so an idle
//! socket holds none; the driver hands each buffer back right after its bytes were consumed.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

const PAGE: usize = 4096;

#[derive(Debug)]
pub(super) struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    mem: NonNull<u8>,
    mem_layout: Layout,
    count: u16,
    size: u32,
    /// Our copy of the ring tail (the kernel owns the head).
    tail: u16,
    pub(super) bgid: u16,
}

// SAFETY: the ring's memory is owned by this value and only touched by the shard thread that
// owns the driver (and by the kernel on that ring's behalf); nothing is shared across threads.
unsafe impl Send for BufRing {}

impl BufRing {
    /// `count` must be a power of two ≤ 32768.
    pub(super) fn new(count: u16, size: u32, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let layout = |bytes: usize| {
            Layout::from_size_align(bytes.max(PAGE), PAGE)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        };
        let entries_layout = layout(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let mem_layout = layout(count as usize * size as usize)?;
        // SAFETY: both layouts have a non-zero size (at least one page).
        let (entries, mem) = unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(mem_layout)) };
        let (Some(entries), Some(mem)) = (NonNull::new(entries.cast()), NonNull::new(mem)) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut r = BufRing {
            entries,
            entries_layout,
            mem,
            mem_layout,
            count,
            size,
            tail: 0,
            bgid,
        };
        for bid in 0..count {
            r.write_entry(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Address of the entry array, for registration.
    pub(super) fn ring_addr(&self) -> u64 {
        self.entries.as_ptr() as u64
    }

    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// The first `len` bytes the kernel wrote into buffer `bid`.
    pub(super) fn get(&self, bid: u16, len: usize) -> &[u8] {
        let bid = (bid % self.count) as usize;
        let len = len.min(self.size as usize);
        // SAFETY: `bid < count`, so the range lies inside `mem`; the kernel finished writing
        // this buffer before posting the completion that named it, and does not reuse it until
        // `recycle` puts it back in the ring.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(bid * self.size as usize), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(super) fn recycle(&mut self, bid: u16) {
        self.write_entry(bid % self.count);
        self.publish();
    }

    fn write_entry(&mut self, bid: u16) {
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot < count`, inside the entry array; the kernel reads entries only between
        // its head and the published tail, and this slot is past the published tail.
        let e = unsafe { &mut *self.entries.as_ptr().add(slot) };
        // SAFETY: `bid < count`, inside `mem`.
        let addr = unsafe { self.mem.as_ptr().add(bid as usize * self.size as usize) };
        e.set_addr(addr as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the ring base is the first entry of a live, page-aligned array; its `resv`
        // field is the shared tail, a u16 the kernel reads atomically.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both blocks were allocated in `new` with exactly these layouts; the driver
        // unregisters the ring (and drops the io_uring) before dropping this.
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.mem.as_ptr(), self.mem_layout);
        }
    }
}
