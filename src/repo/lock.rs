//! Repository locks: an object per holder with an owner and an expiry, refreshed while
//! the holder runs. Writers (backup, copy) take shared locks, prune takes an exclusive
//! one, readers take none. A crashed holder's lock simply expires.

use super::format::{Id, Lock};
use super::{RepoError, keys};
use crate::store::Backend;
use bytes::Bytes;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a lock lives without a refresh.
pub const TTL: Duration = Duration::from_secs(300);
const REFRESH: Duration = Duration::from_secs(60);

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A held lock; released on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    key: Arc<Mutex<String>>,
    /// Dropping it wakes and stops the refresher at once.
    stop: Option<Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

fn write(backend: &dyn Backend, lock: &Lock) -> Result<String, RepoError> {
    let key = format!("locks/{}", Id::random().hex());
    backend.put_new(&key, Bytes::from(serde_json::to_vec(lock).map_err(RepoError::encode)?))?;
    Ok(key)
}

/// Every lock that has not expired, with its key.
pub fn live(backend: &dyn Backend) -> Result<Vec<(String, Lock)>, RepoError> {
    let mut out = Vec::new();
    let t = now();
    for obj in backend.list("locks/")? {
        let Ok(raw) = backend.get(&obj.key) else { continue };
        let Ok(lock) = serde_json::from_slice::<Lock>(&raw) else { continue };
        if lock.expires > t {
            out.push((obj.key, lock));
        }
    }
    Ok(out)
}

/// Deletes expired locks (left by crashed holders).
pub fn remove_stale(backend: &dyn Backend) -> Result<usize, RepoError> {
    let t = now();
    let mut n = 0;
    for obj in backend.list("locks/")? {
        let stale = match backend.get(&obj.key) {
            Ok(raw) => serde_json::from_slice::<Lock>(&raw).map(|l| l.expires <= t).unwrap_or(true),
            Err(_) => false,
        };
        if stale {
            backend.delete(&obj.key)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Takes a lock for `operation`. An exclusive lock needs no other live lock; a shared
/// lock needs no live exclusive one.
pub fn acquire(backend: Arc<dyn Backend>, operation: &str, exclusive: bool) -> Result<LockGuard, RepoError> {
    let created = now();
    let lock = Lock {
        owner: keys::owner(),
        host: keys::hostname(),
        pid: std::process::id(),
        created,
        expires: created + TTL.as_secs() as i64,
        exclusive,
        operation: operation.into(),
    };
    let key = write(&*backend, &lock)?;
    let conflict = live(&*backend)?.into_iter().find(|(k, l)| *k != key && (exclusive || l.exclusive));
    if let Some((_, other)) = conflict {
        let _ = backend.delete(&key);
        let until = jiff::Timestamp::from_second(other.expires).map(|t| t.to_string()).unwrap_or_default();
        return Err(RepoError::Locked {
            url: backend.url().into(),
            detail: format!(
                "{} lock held by {} (pid {}) for {} until {until}; it expires by itself if that process is gone",
                if other.exclusive { "an exclusive" } else { "a" },
                other.owner,
                other.pid,
                other.operation
            ),
        });
    }
    let key = Arc::new(Mutex::new(key));
    let (stop, stopped) = channel::<()>();
    let refresher = {
        let (backend, key) = (backend.clone(), key.clone());
        std::thread::Builder::new()
            .name("lifeline-lock".into())
            .spawn(move || {
                let mut lock = lock;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                    refresh(&*backend, &key, &mut lock);
                }
            })
            .ok()
    };
    Ok(LockGuard { backend, key, stop: Some(stop), refresher })
}

/// Keeps the lock alive: writes a fresh lock object, then removes the old one.
fn refresh(backend: &dyn Backend, key: &Mutex<String>, lock: &mut Lock) {
    lock.expires = now() + TTL.as_secs() as i64;
    if let Ok(new_key) = write(backend, lock) {
        let old = std::mem::replace(&mut *key.lock().unwrap_or_else(|e| e.into_inner()), new_key);
        let _ = backend.delete(&old);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let key = self.key.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = self.backend.delete(&key);
    }
}

/// The lock of a prune: prunes exclude each other and exclusive holders, but run beside
/// backups (the two-phase mark and grace period protect those).
pub fn acquire_prune(backend: Arc<dyn Backend>) -> Result<LockGuard, RepoError> {
    let guard = acquire(backend.clone(), "prune", false)?;
    let own = guard.key.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some((_, other)) = live(&*backend)?.into_iter().find(|(k, l)| *k != own && l.operation == "prune") {
        return Err(RepoError::Locked {
            url: backend.url().into(),
            detail: format!("another prune is running ({} pid {})", other.owner, other.pid),
        });
    }
    Ok(guard)
}
