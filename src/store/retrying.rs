use super::{Backend, ObjectInfo, StoreError};
use bytes::Bytes;
use std::ops::Range;
use std::time::Duration;

/// Retries transient failures with exponential backoff. A create-only put that finds
/// its key present after a retry succeeded earlier (keys are content-addressed or
/// random), so that counts as success.
pub struct Retrying<B> {
    inner: B,
    attempts: u32,
    base: Duration,
}

impl<B: Backend> Retrying<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, attempts: 4, base: Duration::from_millis(200) }
    }

    pub fn with_attempts(mut self, attempts: u32, base: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.base = base;
        self
    }

    fn run<T>(&self, mut op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut delay = self.base;
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if e.retryable() && attempt < self.attempts => {
                    tracing::warn!(error = %e, attempt, "retrying storage operation");
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl<B: Backend> Backend for Retrying<B> {
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let mut tried = false;
        self.run(|| {
            let r = self.inner.put_new(key, data.clone());
            let retried = tried;
            tried = true;
            match r {
                Err(StoreError::AlreadyExists { .. }) if retried => Ok(()),
                other => other,
            }
        })
    }
    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.run(|| self.inner.get(key))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.run(|| self.inner.get_range(key, range.clone()))
    }
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        self.run(|| self.inner.get_range_into(key, range.clone(), buf))
    }
    fn will_read(&self, key: &str, range: Range<u64>) {
        self.inner.will_read(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.run(|| self.inner.list(prefix))
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(|| self.inner.delete(key))
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
