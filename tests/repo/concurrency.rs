//! Writers, prunes and key changes at the same time on one repository: a restore point
//! reported as saved stays restorable, and some key always opens the repository.

use super::{Hook, Hooked, bytes, init, local, secret};
use lifeline::repo::backup::{self, BackupOptions};
use lifeline::repo::format::Id;
use lifeline::repo::prune::{self, Retention};
use lifeline::repo::{Repository, Secret, keys, verify};
use lifeline::store::Backend;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Holds the first put of a key under a prefix until released, so a test can stop an
/// operation at an exact point and run others meanwhile.
pub struct Gate {
    /// (armed, held, released)
    state: Mutex<(bool, bool, bool)>,
    cv: Condvar,
}

impl Gate {
    /// The gate, and a backend over `inner` that stops at it.
    pub fn new(inner: Arc<dyn Backend>, prefix: &str) -> (Arc<Self>, Arc<dyn Backend>) {
        let gate = Arc::new(Self { state: Mutex::new((true, false, false)), cv: Condvar::new() });
        let (g, prefix) = (gate.clone(), prefix.to_string());
        let hook = move |key: &str| {
            if key.starts_with(&prefix) {
                let mut s = g.state.lock().unwrap();
                if s.0 {
                    s.0 = false;
                    s.1 = true;
                    g.cv.notify_all();
                    let _s = g.cv.wait_while(s, |s| !s.2).unwrap();
                }
            }
        };
        (gate, Arc::new(Hooked { inner, when: Hook::Put, hook: Box::new(hook) }))
    }

    /// Waits until a put is being held.
    pub fn wait_held(&self) {
        let g = self.state.lock().unwrap();
        let (g, timeout) = self.cv.wait_timeout_while(g, Duration::from_secs(120), |s| !s.1).unwrap();
        assert!(!timeout.timed_out() && g.1, "the operation never reached the gate");
    }

    pub fn release(&self) {
        self.state.lock().unwrap().2 = true;
        self.cv.notify_all();
    }
}

fn open(backend: Arc<dyn Backend>) -> Arc<Repository> {
    Arc::new(Repository::open(backend, &secret()).unwrap())
}

fn files_equal(a: &Path, b: &Path) {
    assert_eq!(super::roundtrip::describe(a), super::roundtrip::describe(b));
}

/// Finding: a backup that registered while a prune was repacking built on the packs the
/// repack emptied; the next prune deleted them and the reported-success point could not
/// be restored (while `verify` said clean).
#[test]
fn a_backup_that_starts_during_a_repack_stays_restorable() {
    let tmp = tempfile::tempdir().unwrap();
    repack_race(local(&tmp.path().join("repo")));
}

#[test]
fn a_backup_that_starts_during_a_repack_stays_restorable_on_s3() {
    let (server, _) = crate::support::s3::regions();
    repack_race(server.open(&format!("s3://lifeline/{}", crate::support::s3::unique("race"))));
}

fn repack_race(backend: Arc<dyn Backend>) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(backend.clone());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..32u64 {
        std::fs::write(src.join(format!("f{i:03}")), bytes(1 << 20, 100 + i, false)).unwrap();
    }
    super::backup(&repo, &src);
    for i in (1..32u64).step_by(2) {
        std::fs::remove_file(src.join(format!("f{i:03}"))).unwrap();
    }
    let (kept, _) = super::backup(&repo, &src);
    prune::forget(&repo, &Retention { keep_last: Some(1), ..Default::default() }, false).unwrap();

    // The prune stops at its repack's first new pack.
    let (prune_gate, gated) = Gate::new(backend.clone(), "data/");
    let pruner = {
        let repo = open(gated);
        std::thread::spawn(move || prune::prune(&repo, Duration::ZERO))
    };
    prune_gate.wait_held();

    // A backup of the kept files, one byte changed in each, plus new data, starts now
    // and stops at its first pack.
    for i in (0..32u64).step_by(2) {
        let p = src.join(format!("f{i:03}"));
        let mut data = std::fs::read(&p).unwrap();
        data[1000] ^= 0xff;
        std::fs::write(&p, data).unwrap();
    }
    std::fs::write(src.join("new"), bytes(12 << 20, 999, false)).unwrap();
    let (backup_gate, gated) = Gate::new(backend.clone(), "data/");
    let writer = {
        let repo = open(gated);
        let src = src.clone();
        std::thread::spawn(move || {
            let opts = BackupOptions { parent: Some(kept), ..Default::default() };
            backup::run(repo, &src, &opts, Arc::default())
        })
    };
    backup_gate.wait_held();
    prune_gate.release();
    let first = pruner.join().unwrap().unwrap();
    assert!(first.packs_repacked > 0, "the setup must repack: {first:?}");
    // A second prune while the backup still runs.
    prune::prune(&open(backend.clone()), Duration::ZERO).unwrap();
    backup_gate.release();
    let (_, snap) = writer.join().unwrap().expect("the backup reports success");
    // And prunes after it.
    prune::prune(&open(backend.clone()), Duration::ZERO).unwrap();
    prune::prune(&open(backend.clone()), Duration::ZERO).unwrap();

    let repo = open(backend.clone());
    let report = verify::run(&repo, 100).unwrap();
    assert!(report.ok(), "{report:?}");
    let out = tmp.path().join("out");
    super::restore(&repo, &snap, &out);
    let out_root = out.clone();
    files_equal(&out_root, &src);
}

fn pass(p: &str) -> Secret {
    Secret::Passphrase(zeroize::Zeroizing::new(p.as_bytes().to_vec()))
}

/// Finding: two concurrent `key remove`s, each removing the other's slot, left no key.
#[test]
fn concurrent_key_removals_always_leave_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    Repository::init(backend.clone(), &pass("alice")).unwrap();
    for round in 0..4 {
        // Both keys present.
        let opens = |p: &str| keys::unlock_slot(&*backend, &pass(p)).ok().map(|(id, _)| id);
        if opens("bob").is_none() {
            keys::add(backend.clone(), &pass("alice"), &pass("bob")).unwrap();
        }
        if opens("alice").is_none() {
            keys::add(backend.clone(), &pass("bob"), &pass("alice")).unwrap();
        }
        let (a, b) = (opens("alice").unwrap(), opens("bob").unwrap());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let run = |who: &'static str, other: Id| {
            let (backend, barrier) = (backend.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                keys::remove(backend, &pass(who), &other.hex())
            })
        };
        let (ra, rb) = (run("alice", b), run("bob", a));
        let (ra, rb) = (ra.join().unwrap(), rb.join().unwrap());
        assert!(!(ra.is_ok() && rb.is_ok()), "round {round}: both removals succeeded");
        assert!(
            opens("alice").is_some() || opens("bob").is_some(),
            "round {round}: no key opens the repository ({ra:?}, {rb:?})"
        );
        // Whoever succeeded, the survivor's key still opens it.
        if ra.is_ok() {
            assert!(opens("alice").is_some());
        }
        if rb.is_ok() {
            assert!(opens("bob").is_some());
        }
    }
}

/// Finding: of two concurrent `init`s with different passwords, the loser's key slot
/// stayed, wrapping another master secret: its password "backed up" into a repository
/// whose other points then failed to decrypt.
#[test]
fn concurrent_inits_leave_one_repository_and_one_master() {
    for round in 0..4 {
        let tmp = tempfile::tempdir().unwrap();
        let backend = local(&tmp.path().join("repo"));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let run = |who: &'static str| {
            let (backend, barrier) = (backend.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Repository::init(backend, &pass(who)).map(|_| who)
            })
        };
        let (a, b) = (run("alice"), run("bob"));
        let results = [a.join().unwrap(), b.join().unwrap()];
        let winners: Vec<&str> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = if winners[0] == "alice" { "bob" } else { "alice" };
        let err = Repository::open(backend.clone(), &pass(loser)).err().expect("the loser's key must not open it");
        assert_eq!(err.category(), "WrongKey", "{err}");
        Repository::open(backend.clone(), &pass(winners[0])).unwrap();
    }
    // A slot left by a crashed loser (written, never removed) is ignored.
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    Repository::init(backend.clone(), &pass("alice")).unwrap();
    let stray = lifeline::repo::crypto::MasterKey::generate();
    keys::add_slot(&*backend, &stray, &pass("bob")).unwrap();
    let err = Repository::open(backend.clone(), &pass("bob")).err().unwrap();
    assert_eq!(err.category(), "WrongKey", "{err}");
}

/// Finding: with small packs, every `prune --grace 0s` repacked what the previous one
/// wrote (a pack's header counted as waste).
#[test]
fn prunes_of_small_packs_settle() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    let repo = init(backend.clone());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for round in 0..6u64 {
        // Tiny files, a few of which change each time: metadata packs of small blobs.
        for i in 0..20u64 {
            let (len, seed) = (if i % 2 == 0 { 200 } else { 3000 }, if i < 3 { round * 100 + i } else { i });
            std::fs::write(src.join(format!("f{i}")), bytes(len, seed, false)).unwrap();
        }
        super::backup(&repo, &src);
    }
    prune::forget(&repo, &Retention { keep_last: Some(2), ..Default::default() }, false).unwrap();
    let mut repacked = Vec::new();
    for _ in 0..4 {
        repacked.push(prune::prune(&open(backend.clone()), Duration::ZERO).unwrap().packs_repacked);
    }
    assert_eq!(repacked[2..], [0, 0], "prunes keep repacking: {repacked:?}");
    let repo = open(backend);
    assert!(verify::run(&repo, 100).unwrap().ok());
}

/// A writer whose lock was removed as expired (its process paused past the expiry while
/// a prune ran) must not record a point, even after its refresher wrote a new lock.
#[test]
fn a_writer_that_lost_its_lock_records_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    let repo = init(backend.clone());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), bytes(10_000, 1, false)).unwrap();
    let (_, snap) = super::backup(&repo, &src);

    let (guard, _) = prune::register_writer(&repo, "backup").unwrap();
    for obj in backend.list("locks/").unwrap() {
        backend.delete(&obj.key).unwrap();
    }
    // The refresher runs when the process resumes: a new lock object appears.
    guard.set_marks_seen(Vec::new()).unwrap();
    assert_eq!(backend.list("locks/").unwrap().len(), 1);
    let later = lifeline::repo::format::Snapshot { time: "2030-01-01T00:00:00Z".into(), ..snap };
    let err = prune::commit_point(&repo, &guard, &later).unwrap_err();
    assert_eq!(err.category(), "Locked", "{err}");
    assert_eq!(repo.points().unwrap().good.len(), 1, "no point was recorded");
}

/// Finding: a scheduled verification that ran while a backup finished called the new
/// point unrestorable: it read the index, then listed the points, and the point finished
/// in between used blobs of an index file it had not read.
#[test]
fn a_point_finished_during_a_verify_is_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    super::volume(data.path());
    let inner = local(&dir.path().join("repo"));
    let repo = init(inner.clone());
    super::backup(&repo, data.path());
    // The second backup writes new data (new packs, a new index file) and completes
    // between verify's first and later listings.
    std::fs::write(data.path().join("new"), bytes(3 << 20, 99, false)).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (writer, src) = (open(inner.clone()), data.path().to_path_buf());
    let hook = move |prefix: &str| {
        if prefix == "data/" && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            super::backup(&writer, &src);
        }
    };
    let verifier = open(Arc::new(Hooked { inner: inner.clone(), when: Hook::List, hook: Box::new(hook) }));
    let report = verify::run(&verifier, 100).unwrap();
    assert!(report.ok(), "a verify during a backup found damage: {}", report.summary());
    // The point finished during the verify is whole, and the next verify covers it.
    let again = verify::run(&open(inner), 100).unwrap();
    assert!(again.ok(), "{}", again.summary());
    assert_eq!(again.snapshots_checked, 2);
}

/// Finding (a one-minute schedule with `keepLast`): a backup reused, by id, a tree of a
/// point a concurrent prune saw forgotten, so the prune marked its pack; the point it
/// saved keeps the pack alive, but every later backup left the marked pack out of its
/// index and failed reading its parent's tree ("Tree blob … is missing from the index"),
/// run after run. A writer may read its parent's trees and recipes from marked packs; it
/// only never builds on them.
#[test]
fn a_parent_whose_tree_sits_in_a_marked_pack_still_serves_the_next_backup() {
    // The operator's grace: a mark stays while its unused packs wait, used ones with it.
    const GRACE: Duration = Duration::from_secs(3600);
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    let repo = init(backend.clone());
    let src = tmp.path().join("src");
    // Many unchanged directories: the pack of the first point's trees stays mostly used
    // (only its root tree goes), so no prune repacks it out of its mark.
    for d in 0..40u64 {
        std::fs::create_dir_all(src.join(format!("same/d{d:02}"))).unwrap();
        std::fs::write(src.join(format!("same/d{d:02}/x")), bytes(4096, 100 + d, false)).unwrap();
    }
    std::fs::write(src.join("a"), bytes(4096, 2, false)).unwrap();
    let (first, _) = super::backup(&repo, &src);

    // A backup that reuses `same`'s tree by id stops at its first pack...
    std::fs::write(src.join("a"), bytes(4096, 3, false)).unwrap();
    let (gate, gated) = Gate::new(backend.clone(), "data/");
    let writer = {
        let repo = open(gated);
        let src = src.clone();
        std::thread::spawn(move || backup::run(repo, &src, &BackupOptions::default(), Arc::default()))
    };
    gate.wait_held();
    // ... while the point it builds on is forgotten and a prune marks that point's packs.
    prune::forget_ids(&open(backend.clone()), &[first]).unwrap();
    let marked = prune::prune(&open(backend.clone()), GRACE).unwrap();
    assert!(marked.packs_marked > 0, "{marked:?}");
    gate.release();
    let (second, _) = writer.join().unwrap().expect("the backup reports success");
    prune::prune(&open(backend.clone()), GRACE).unwrap();

    // The next backups build on that point.
    for seed in 4..6 {
        std::fs::write(src.join("a"), bytes(4096, seed, false)).unwrap();
        let repo = open(backend.clone());
        let opts = BackupOptions { parent: Some(second), ..Default::default() };
        let (_, snap) = backup::run(repo.clone(), &src, &opts, Arc::default()).expect("a backup on that parent");
        // The parent's listings were read (not skipped): its unchanged files were reused.
        assert_eq!(snap.summary.unchanged_files, 40, "{:?}", snap.summary);
        prune::prune(&repo, GRACE).unwrap();
        let report = verify::run(&open(backend.clone()), 100).unwrap();
        assert!(report.ok(), "{report:?}");
        let out = tmp.path().join(format!("out{seed}"));
        super::restore(&open(backend.clone()), &snap, &out);
        files_equal(&out, &src);
    }
}

/// A prune walks a directory too large to decode whole (thousands of files with long
/// names, so its tree is streamed) a window at a time: what the kept point needs stays,
/// the data only the forgotten point had goes, and the kept point restores whole.
#[test]
fn a_prune_keeps_everything_a_large_directory_needs_and_drops_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    let repo = init(backend.clone());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let long = "n".repeat(230);
    for i in 0..9000u64 {
        std::fs::write(src.join(format!("{long}-{i:05}")), bytes(300, i, false)).unwrap();
    }
    std::fs::write(src.join("sub/inner"), bytes(5000, 1, false)).unwrap();
    // The first point alone has 2 MB that no other point shares.
    std::fs::write(src.join("gone"), bytes(2 << 20, 7, false)).unwrap();
    let (first, _) = super::backup(&repo, &src);
    std::fs::remove_file(src.join("gone")).unwrap();
    let (_, kept) = super::backup(&repo, &src);
    prune::forget_ids(&repo, &[first]).unwrap();
    let stored = |b: &Arc<dyn Backend>| -> u64 { b.list("data/").unwrap().iter().map(|o| o.size).sum() };
    let before = stored(&backend);
    prune::prune(&open(backend.clone()), Duration::ZERO).unwrap();
    let report = prune::prune(&open(backend.clone()), Duration::ZERO).unwrap();
    let after = stored(&backend);
    assert!(report.packs_deleted > 0 && before - after >= 2 << 20, "{before} -> {after} bytes: {report:?}");
    let repo = open(backend);
    assert!(verify::run(&repo, 100).unwrap().ok());
    let out = tmp.path().join("out");
    super::restore(&repo, &kept, &out);
    let report = lifeline::repo::check::run(&repo, &kept, &out, &[]).unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.files, 9001);
}
