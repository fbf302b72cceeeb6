//! A small pool of large buffers (read blocks, packs), so the data path reuses the same
//! memory instead of fragmenting the heap or faulting in fresh pages.

use bytes::Bytes;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Buffers of one size class.
pub struct Pool {
    state: Mutex<State>,
    returned: Condvar,
    capacity: usize,
    keep: usize,
    /// Buffers out at once before [`Pool::take`] waits for one to come back.
    limit: usize,
}

struct State {
    free: Vec<Vec<u8>>,
    out: usize,
}

/// How long [`Pool::take`] waits at the limit before allocating anyway: the limit bounds
/// memory in the steady state, it must never stall a pipeline that holds buffers itself.
const LIMIT_WAIT: Duration = Duration::from_millis(500);

impl Pool {
    /// Buffers of `capacity` bytes; at most `keep` idle ones are kept.
    pub fn new(capacity: usize, keep: usize) -> Arc<Self> {
        Self::with_limit(capacity, keep, usize::MAX)
    }

    /// Like [`Pool::new`], and [`Pool::take`] waits (a while) when `limit` buffers are out.
    pub fn with_limit(capacity: usize, keep: usize, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { free: Vec::new(), out: 0 }),
            returned: Condvar::new(),
            capacity,
            keep,
            limit,
        })
    }

    /// An empty buffer with at least the pool's capacity.
    pub fn take(&self) -> Vec<u8> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.out >= self.limit {
            st = self
                .returned
                .wait_timeout_while(st, LIMIT_WAIT, |s| s.out >= self.limit)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
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
        drop(st);
        self.returned.notify_one();
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
}
