//! Repository locks: an object per holder with an owner and an expiry, refreshed while
//! the holder runs. Writers (backup, copy) take shared locks that also record which prune
//! marks they have seen; prunes and key changes exclude their own kind; readers take
//! none. A crashed holder's lock expires, and a prune removes it. The protocol between
//! writers and prune is written down in `docs/FORMAT.md` ("Concurrency").

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

/// Operations whose locks never hold back a prune's deletions: they create no
/// references to data.
const NON_WRITERS: [&str; 4] = ["prune", "repair", "forget", "key"];

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The lock object a holder currently has, and its content.
struct Held {
    key: String,
    lock: Lock,
    /// The lock object vanished at some point (a prune removed it as expired): the
    /// holder was unprotected for a while, whatever lock it holds now.
    lost: bool,
}

/// A held lock; released on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    held: Arc<Mutex<Held>>,
    /// Dropping it wakes and stops the refresher at once.
    stop: Option<Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

fn write(backend: &dyn Backend, lock: &Lock) -> Result<String, RepoError> {
    let key = format!("locks/{}", Id::random().hex());
    backend.put_new(&key, Bytes::from(serde_json::to_vec(lock).map_err(RepoError::encode)?))?;
    Ok(key)
}

/// Every lock object present, with its content (`None` if it cannot be read or parsed:
/// such a lock is treated as a writer that has seen nothing).
pub fn present(backend: &dyn Backend) -> Result<Vec<(String, Option<Lock>)>, RepoError> {
    let mut out = Vec::new();
    for obj in backend.list("locks/")? {
        match backend.get(&obj.key) {
            Ok(raw) => out.push((obj.key, serde_json::from_slice::<Lock>(&raw).ok())),
            // Released or replaced by a refresh since the listing.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Every lock that has not expired, with its key.
pub fn live(backend: &dyn Backend) -> Result<Vec<(String, Lock)>, RepoError> {
    let t = now();
    Ok(present(backend)?.into_iter().filter_map(|(k, l)| l.filter(|l| l.expires > t).map(|l| (k, l))).collect())
}

/// Deletes expired locks (left by crashed holders). A prune treats every lock it did not
/// delete here as live, so a writer whose lock still exists is always accounted for.
pub fn remove_stale(backend: &dyn Backend) -> Result<usize, RepoError> {
    let t = now();
    let mut n = 0;
    for (key, lock) in present(backend)? {
        if lock.is_none_or(|l| l.expires <= t) {
            backend.delete(&key)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Whether a lock holds back the deletion of the packs of the prune mark `mark_key`: a
/// writer that had not seen the mark when it loaded the index may build on those packs.
pub fn blocks_deletion(lock: Option<&Lock>, mark_key: &str) -> bool {
    match lock {
        None => true,
        Some(l) if NON_WRITERS.contains(&l.operation.as_str()) => false,
        Some(l) => !l.marks_seen.as_ref().is_some_and(|seen| seen.iter().any(|k| k == mark_key)),
    }
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
        marks_seen: None,
    };
    let key = write(&*backend, &lock)?;
    let conflict = live(&*backend)?.into_iter().find(|(k, l)| *k != key && (exclusive || l.exclusive));
    if let Some((_, other)) = conflict {
        let _ = backend.delete(&key);
        return Err(locked(&*backend, &other));
    }
    let held = Arc::new(Mutex::new(Held { key, lock, lost: false }));
    let (stop, stopped) = channel::<()>();
    let refresher = {
        let (backend, held) = (backend.clone(), held.clone());
        std::thread::Builder::new()
            .name("lifeline-lock".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                    let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = replace(&*backend, &mut h, |_| {});
                }
            })
            .ok()
    };
    Ok(LockGuard { backend, held, stop: Some(stop), refresher })
}

fn locked(backend: &dyn Backend, other: &Lock) -> RepoError {
    let until = jiff::Timestamp::from_second(other.expires).map(|t| t.to_string()).unwrap_or_default();
    RepoError::Locked {
        url: backend.url().into(),
        detail: format!(
            "{} lock held by {} (pid {}) for {} until {until}; it expires by itself if that process is gone",
            if other.exclusive { "an exclusive" } else { "a" },
            other.owner,
            other.pid,
            other.operation
        ),
    }
}

/// Writes a changed lock object with a fresh expiry, then removes the old one. If the old
/// one is gone by then, the lock was lost (see [`Held::lost`]): a prune that removed it
/// may have listed the locks before the new one existed.
fn replace(backend: &dyn Backend, h: &mut Held, change: impl FnOnce(&mut Lock)) -> Result<(), RepoError> {
    let mut lock = h.lock.clone();
    change(&mut lock);
    lock.expires = now() + TTL.as_secs() as i64;
    let new_key = write(backend, &lock)?;
    match backend.get(&h.key) {
        Ok(_) => {}
        Err(e) if e.is_not_found() => h.lost = true,
        Err(e) => return Err(e.into()),
    }
    let old = std::mem::replace(&mut h.key, new_key);
    h.lock = lock;
    backend.delete(&old)?;
    Ok(())
}

impl LockGuard {
    /// Records the prune marks this writer has seen (after registering, before loading
    /// the index).
    pub fn set_marks_seen(&self, marks: Vec<String>) -> Result<(), RepoError> {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        replace(&*self.backend, &mut h, |l| l.marks_seen = Some(marks))
    }

    /// Checks that this lock still exists. A prune removes only expired locks, and
    /// treats every other one as live; a writer whose lock was removed (its process was
    /// paused past the expiry, or could not refresh) may have built on deleted data.
    pub fn confirm(&self) -> Result<(), RepoError> {
        let h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let lost = || RepoError::LockLost { url: self.backend.url().into(), operation: h.lock.operation.clone() };
        if h.lost {
            return Err(lost());
        }
        match self.backend.get(&h.key) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(lost()),
            Err(e) => Err(e.into()),
        }
    }

    fn key(&self) -> String {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).key.clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let _ = self.backend.delete(&self.key());
    }
}

/// A lock for an operation of which only one may run at a time (`prune`, `key`): it
/// excludes exclusive holders and other holders of the same operation, and runs beside
/// everything else. Two that start together may both be refused; never both admitted.
pub fn acquire_sole(backend: Arc<dyn Backend>, operation: &str) -> Result<LockGuard, RepoError> {
    // A repair and a prune both rewrite the index and write marks: one class.
    let class = |op: &str| if op == "repair" { "prune".to_string() } else { op.to_string() };
    let guard = acquire(backend.clone(), operation, false)?;
    let own = guard.key();
    if let Some((_, other)) =
        live(&*backend)?.into_iter().find(|(k, l)| *k != own && class(&l.operation) == class(operation))
    {
        return Err(RepoError::Locked {
            url: backend.url().into(),
            detail: format!("a {} is running ({} pid {})", other.operation, other.owner, other.pid),
        });
    }
    Ok(guard)
}

/// The lock of a prune: prunes exclude each other and exclusive holders, but run beside
/// backups (the two-phase mark and the writers' seen marks protect those).
pub fn acquire_prune(backend: Arc<dyn Backend>) -> Result<LockGuard, RepoError> {
    acquire_sole(backend, "prune")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(op: &str, seen: Option<&[&str]>) -> Lock {
        Lock {
            owner: "u@h".into(),
            host: "h".into(),
            pid: 1,
            created: 0,
            expires: 1,
            exclusive: false,
            operation: op.into(),
            marks_seen: seen.map(|s| s.iter().map(|k| k.to_string()).collect()),
        }
    }

    #[test]
    fn only_writers_that_have_not_seen_a_mark_hold_back_its_deletion() {
        let m = "prune/aa";
        assert!(blocks_deletion(None, m), "an unreadable lock is a writer that has seen nothing");
        assert!(blocks_deletion(Some(&lock("backup", None)), m), "still registering");
        assert!(blocks_deletion(Some(&lock("backup", Some(&["prune/bb"]))), m));
        assert!(!blocks_deletion(Some(&lock("backup", Some(&["prune/bb", m]))), m));
        assert!(blocks_deletion(Some(&lock("copy", Some(&[]))), m));
        assert!(blocks_deletion(Some(&lock("something-new", None)), m), "unknown operations count as writers");
        for op in ["prune", "forget", "key"] {
            assert!(!blocks_deletion(Some(&lock(op, None)), m), "{op}");
        }
    }
}
