use super::{Backend, ObjectInfo, StoreError};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Mutex;

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Every operation fails as if the service were down.
    Down,
    /// Puts fail (as unreachable) once this many more puts have succeeded.
    FailPutsAfter(u32),
    /// Gets of keys with this prefix return data with one byte flipped.
    CorruptReads(String),
}

/// Injects faults, for tests of what users see when storage misbehaves.
pub struct Faulty<B> {
    inner: B,
    fault: Mutex<Option<Fault>>,
}

impl<B: Backend> Faulty<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, fault: Mutex::new(None) }
    }

    pub fn set(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    fn down(&self) -> StoreError {
        StoreError::Unreachable { url: self.inner.url().into(), detail: "injected fault: connection refused".into() }
    }

    fn check(&self, put: bool) -> Result<(), StoreError> {
        let mut f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        match f.as_mut() {
            Some(Fault::Down) => Err(self.down()),
            Some(Fault::FailPutsAfter(0)) if put => Err(self.down()),
            Some(Fault::FailPutsAfter(n)) if put => {
                *n -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn corrupt(&self, key: &str, data: Bytes) -> Bytes {
        let f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        match f.as_ref() {
            Some(Fault::CorruptReads(prefix)) if key.starts_with(prefix.as_str()) && !data.is_empty() => {
                let mut v = data.to_vec();
                v[0] ^= 0x01;
                v.into()
            }
            _ => data,
        }
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.check(true)?;
        self.inner.put_new(key, data)
    }
    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.check(false)?;
        Ok(self.corrupt(key, self.inner.get(key)?))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check(false)?;
        Ok(self.corrupt(key, self.inner.get_range(key, range)?))
    }
    fn will_read(&self, key: &str, range: Range<u64>) {
        self.inner.will_read(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check(false)?;
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check(false)?;
        self.inner.delete(key)
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
