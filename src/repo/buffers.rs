//! A small pool of large buffers (read blocks, packs), so the data path reuses the same
//! memory instead of fragmenting the heap or faulting in fresh pages.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Buffers of one size class.
pub struct Pool {
    state: Mutex<State>,
    capacity: usize,
    keep: usize,
    /// Buffers out at once before [`Pool::try_take`] declines.
    limit: usize,
}

struct State {
    free: Vec<Vec<u8>>,
    out: usize,
}

impl Pool {
    /// Buffers of `capacity` bytes; at most `keep` idle ones are kept.
    pub fn new(capacity: usize, keep: usize) -> Arc<Self> {
        Self::with_limit(capacity, keep, usize::MAX)
    }

    /// Like [`Pool::new`], and [`Pool::try_take`] declines when `limit` buffers are out.
    /// The pool never waits: the user knows what returns buffers (see the backup's read
    /// blocks) and does that, or goes over the limit with [`Pool::take`].
    pub fn with_limit(capacity: usize, keep: usize, limit: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { free: Vec::new(), out: 0 }), capacity, keep, limit })
    }

    /// An empty buffer with at least the pool's capacity, over the limit if need be.
    pub fn take(&self) -> Vec<u8> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.hand_out(st)
    }

    /// Like [`Pool::take`], but `None` when `limit` buffers are out.
    pub fn try_take(&self) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.out < self.limit).then(|| self.hand_out(st))
    }

    /// Buffers out now.
    pub fn out(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).out
    }

    fn hand_out(&self, mut st: std::sync::MutexGuard<'_, State>) -> Vec<u8> {
        st.out += 1;
        let reused = st.free.pop();
        drop(st);
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.out = st.out.saturating_sub(1);
        if buf.capacity() >= self.capacity && st.free.len() < self.keep {
            st.free.push(buf);
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
        assert!(pool.state.lock().unwrap().free.is_empty(), "still referenced by a slice");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same memory is reused");
    }

    #[test]
    fn at_the_limit_try_take_declines_and_take_goes_over() {
        let pool = Pool::with_limit(64, 2, 1);
        let held = pool.freeze(pool.try_take().expect("below the limit"));
        assert!(pool.try_take().is_none(), "at the limit");
        let extra = pool.freeze(pool.take());
        assert_eq!(pool.out(), 2);
        drop((held, extra));
        assert_eq!(pool.out(), 0);
        assert!(pool.try_take().is_some(), "a returned buffer frees a place");
    }
}
