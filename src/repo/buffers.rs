//! A small pool of large buffers (read blocks, packs), so the data path reuses the same
//! memory instead of fragmenting the heap or faulting in fresh pages.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Buffers of one size class.
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    keep: usize,
}

impl Pool {
    /// Buffers of `capacity` bytes; at most `keep` idle ones are kept.
    pub fn new(capacity: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self { free: Mutex::new(Vec::new()), capacity, keep })
    }

    /// An empty buffer with at least the pool's capacity.
    pub fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if buf.capacity() >= self.capacity && free.len() < self.keep {
            free.push(buf);
        }
    }

    /// Freezes `buf` into `Bytes` that return the memory to the pool when the last
    /// slice of it is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: self.clone() })
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_is_dropped() {
        let pool = Pool::new(1024, 2);
        let mut b = pool.take();
        b.extend_from_slice(&[7; 100]);
        let ptr = b.as_ptr();
        let bytes = pool.freeze(b);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "still referenced by a slice");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same memory is reused");
    }
}
