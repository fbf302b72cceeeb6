use super::{Backend, ObjectInfo, StoreError};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Request and byte counters of a location.
#[derive(Debug, Default)]
pub struct Meters {
    pub requests: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub errors: AtomicU64,
}

impl Meters {
    pub fn uploaded(&self) -> u64 {
        self.bytes_up.load(Relaxed)
    }
    pub fn downloaded(&self) -> u64 {
        self.bytes_down.load(Relaxed)
    }
    pub fn request_count(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

/// Counts requests and bytes.
pub struct Metered<B> {
    inner: B,
    pub meters: Arc<Meters>,
}

impl<B: Backend> Metered<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, meters: Arc::default() }
    }

    fn count<T>(&self, r: Result<T, StoreError>, down: impl Fn(&T) -> u64) -> Result<T, StoreError> {
        self.meters.requests.fetch_add(1, Relaxed);
        match &r {
            Ok(v) => {
                self.meters.bytes_down.fetch_add(down(v), Relaxed);
            }
            Err(_) => {
                self.meters.errors.fetch_add(1, Relaxed);
            }
        }
        r
    }
}

impl<B: Backend> Backend for Metered<B> {
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let r = self.count(self.inner.put_new(key, data), |_| 0);
        if r.is_ok() {
            self.meters.bytes_up.fetch_add(len, Relaxed);
        }
        r
    }
    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.count(self.inner.get(key), |b| b.len() as u64)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.count(self.inner.get_range(key, range), |b| b.len() as u64)
    }
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let r = self.inner.get_range_into(key, range, buf);
        self.count(r, |_| buf.len() as u64)
    }
    fn will_read(&self, key: &str, range: Range<u64>) {
        self.inner.will_read(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.count(self.inner.list(prefix), |_| 0)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count(self.inner.delete(key), |_| 0)
    }
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn remove_incomplete(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        self.inner.remove_incomplete(older_than)
    }
}
