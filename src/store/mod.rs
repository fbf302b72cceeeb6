//! Object storage for repositories: one narrow, synchronous interface over
//! `object_store` (S3 and S3-compatible, GCS, Azure, local files), and wrappers that
//! retry, meter and (in tests) inject faults. Writes are create-only.

mod error;
mod faulty;
mod local;
mod metered;
mod object;
mod retrying;

pub use error::StoreError;
pub use faulty::{Fault, Faulty};
pub use metered::{Metered, Meters};
pub use object::{CREDENTIAL_KEYS, LocationOptions, ca_bundle_from_env, file_path, open};
pub use retrying::Retrying;

use bytes::Bytes;
use std::ops::Range;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the location's prefix (`data/ab/abcd…`).
    pub key: String,
    pub size: u64,
    /// Last modification, seconds since the epoch.
    pub modified: i64,
}

/// A location: keys are relative to the location's URL.
pub trait Backend: Send + Sync {
    /// Stores `data` at `key` unless the key exists (then [`StoreError::AlreadyExists`]).
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError>;
    /// [`Backend::get_range`] into `buf` (cleared first): a reader that reads range after
    /// range reuses one buffer, whose pages stay mapped, instead of a new allocation per
    /// range that the kernel must fault in and zero page by page (a tenth of a restore's
    /// CPU from an object store went there).
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let bytes = self.get_range(key, range)?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Ok(())
    }
    /// Advice that `range` of `key` is to be read soon: a local directory starts reading
    /// it from disk into the page cache; object stores ignore it.
    fn will_read(&self, key: &str, range: Range<u64>) {
        let _ = (key, range);
    }
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes `key`; deleting a missing key succeeds.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The location, for messages (`s3://bucket/prefix`).
    fn url(&self) -> &str;
    /// Makes every object written so far durable, names included. Object stores have
    /// nothing to do (a put that returned is durable); a local directory syncs the
    /// directories that got new names. Called before an index or restore point names
    /// what was written, and before anything is deleted in favour of it.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Removes what writes interrupted by a crash left behind (never visible as objects)
    /// and older than `older_than`; returns how many. Object stores have nothing to do.
    fn remove_incomplete(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        let _ = older_than;
        Ok(0)
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        (**self).put_new(key, data)
    }
    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        (**self).get_range(key, range)
    }
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        (**self).get_range_into(key, range, buf)
    }
    fn will_read(&self, key: &str, range: Range<u64>) {
        (**self).will_read(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn url(&self) -> &str {
        (**self).url()
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn remove_incomplete(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        (**self).remove_incomplete(older_than)
    }
}

/// One read of at most `want` bytes, straight into the buffer's spare capacity (`Read`
/// would have it zeroed first).
pub(crate) fn read_once(file: &std::fs::File, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    buf.reserve(want);
    let n = read_spare(file, buf.spare_capacity_mut(), want)?;
    // SAFETY: `read_spare` wrote the `n` bytes after the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One `read(2)` of at most `want` bytes into `spare` (retried when interrupted); returns
/// how many of its first bytes were written.
pub(crate) fn read_spare(
    file: &std::fs::File,
    spare: &mut [std::mem::MaybeUninit<u8>],
    want: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let len = want.min(spare.len());
    loop {
        // SAFETY: the kernel writes at most `len` bytes, within `spare`.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
