mod check;
mod concurrency;
mod damage;
mod faults;
mod hostile;
mod locations;
mod roundtrip;
mod tls;
mod torture;

use lifeline::repo::format::{Id, Snapshot};
use lifeline::repo::{Repository, Secret};
use lifeline::store::Backend;
use std::path::Path;
use std::sync::Arc;

pub fn secret() -> Secret {
    Secret::Passphrase(zeroize::Zeroizing::new(b"correct horse battery staple".to_vec()))
}

/// A `file://` location in `dir`, created if missing.
pub fn local(dir: &Path) -> Arc<dyn Backend> {
    let url = format!("file://{}", dir.display());
    lifeline::store::open(&url, &lifeline::store::LocationOptions { create: true, ..Default::default() }).unwrap()
}

pub fn init(backend: Arc<dyn Backend>) -> Arc<Repository> {
    Arc::new(Repository::init(backend, &secret()).unwrap())
}

pub fn backup(repo: &Arc<Repository>, path: &Path) -> (Id, Snapshot) {
    lifeline::repo::backup::run(repo.clone(), path, &Default::default(), Arc::default()).unwrap()
}

pub fn restore(repo: &Arc<Repository>, snap: &Snapshot, target: &Path) {
    lifeline::repo::restore::run(repo.clone(), snap, target, &Default::default(), Arc::default()).unwrap();
}

/// Deterministic bytes: `len` of them, compressible or not.
pub fn bytes(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|i| {
            if compressible {
                b"{\"level\":\"info\",\"msg\":\"lifeline\"}\n"[i % 34]
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

/// A small tree like a database volume: a large file changed in place, logs, configs.
pub fn volume(root: &Path) {
    std::fs::create_dir_all(root.join("base")).unwrap();
    std::fs::create_dir_all(root.join("log")).unwrap();
    std::fs::write(root.join("base/table"), bytes(6 << 20, 1, false)).unwrap();
    std::fs::write(root.join("log/app.log"), bytes(2 << 20, 2, true)).unwrap();
    std::fs::write(root.join("PG_VERSION"), b"17\n").unwrap();
}

/// Changes 8 KiB pages in place, at scattered offsets, as a database does.
pub fn change_pages(file: &Path, pages: usize, seed: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let len = f.metadata().unwrap().len();
    for i in 0..pages as u64 {
        let page = (i * 7919 + seed * 104_729) % (len / 8192);
        f.write_all_at(&bytes(8192, seed + i, false), page * 8192).unwrap();
    }
}

/// When a [`Hooked`] backend calls its hook.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before each put, with the key: for tests that act at an exact point of an
    /// operation (hold it, delete files under it).
    Put,
    /// Before each listing, with the prefix: for tests that run another operation between
    /// two reads of one.
    List,
}

/// A backend that calls `hook` at the moments `when` says.
pub struct Hooked {
    pub inner: Arc<dyn Backend>,
    pub when: Hook,
    pub hook: Box<dyn Fn(&str) + Send + Sync>,
}

impl Backend for Hooked {
    fn put_new(&self, key: &str, data: bytes::Bytes) -> Result<(), lifeline::store::StoreError> {
        if self.when == Hook::Put {
            (self.hook)(key);
        }
        self.inner.put_new(key, data)
    }
    fn get(&self, key: &str) -> Result<bytes::Bytes, lifeline::store::StoreError> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<bytes::Bytes, lifeline::store::StoreError> {
        self.inner.get_range(key, range)
    }
    fn list(&self, prefix: &str) -> Result<Vec<lifeline::store::ObjectInfo>, lifeline::store::StoreError> {
        if self.when == Hook::List {
            (self.hook)(prefix);
        }
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), lifeline::store::StoreError> {
        self.inner.delete(key)
    }
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn flush(&self) -> Result<(), lifeline::store::StoreError> {
        self.inner.flush()
    }
}
