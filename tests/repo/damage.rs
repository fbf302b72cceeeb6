//! Damage to a repository's objects: `verify` names exactly the restore points a restore
//! would fail on (and those that depend on something damaged), one damaged object never
//! blocks the other points, and `repair` brings back every undamaged point.

use super::roundtrip::describe;
use super::{bytes, init, local, secret};
use lifeline::repo::format::{BlobKind, Id, Snapshot};
use lifeline::repo::{Repository, repair, verify};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    points: Vec<(Id, Snapshot, PathBuf)>,
}

/// Three restore points of three directories that share one file.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = init(local(&dir));
    let mut points = Vec::new();
    for i in 0..3u64 {
        let src = tmp.path().join(format!("src{i}"));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("shared"), bytes(300_000, 7, false)).unwrap();
        std::fs::write(src.join(format!("own{i}")), bytes(900_000, 10 + i, false)).unwrap();
        std::fs::write(src.join("sub/log"), bytes(200_000 + i as usize, 20 + i, true)).unwrap();
        let (id, snap) = super::backup(&repo, &src);
        points.push((id, snap, src));
    }
    Fixture { _tmp: tmp, dir, points }
}

fn open(dir: &Path) -> Arc<Repository> {
    Arc::new(Repository::open(local(dir), &secret()).unwrap())
}

/// The points whose restore fails or differs from their source.
fn failing(f: &Fixture) -> BTreeSet<String> {
    let repo = open(&f.dir);
    let mut out = BTreeSet::new();
    for (i, (id, _, src)) in f.points.iter().enumerate() {
        let target = f.dir.parent().unwrap().join(format!("restore-{i}-{}", rand_suffix()));
        // As a user restores it: by id.
        let ok = repo.find_snapshot(&id.hex()).is_ok_and(|(_, snap)| {
            lifeline::repo::restore::run(repo.clone(), &snap, &target, &Default::default(), Arc::default()).is_ok()
        }) && describe(&target) == describe(src);
        if !ok {
            out.insert(id.hex());
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    out
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What verify says a restore would fail on: unrestorable points and unreadable point
/// objects.
fn reported(r: &verify::VerifyReport) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = r.unrestorable().iter().map(|a| a.restore_point.clone()).collect();
    out.extend(r.damaged_points.iter().map(|d| d.key.trim_start_matches("snapshots/").to_string()));
    out
}

/// Damages the fixture with `damage`, then checks verify, the other points, and repair.
fn case(name: &str, damage: impl FnOnce(&Fixture)) {
    let f = fixture();
    damage(&f);
    let before = verify::run(&open(&f.dir), 100).unwrap();
    assert!(!before.ok(), "{name}: verify found nothing: {before:?}");
    // Finding: verify once said "checked 22 of 21 packs".
    assert!(before.packs_checked <= before.packs_total, "{name}: {before:?}");
    let failed = failing(&f);
    assert_eq!(reported(&before), failed, "{name}: verify must name exactly the points a restore fails on: {before:?}");
    // Listing works, with the readable points.
    let listed = open(&f.dir).points().unwrap();
    assert_eq!(listed.good.len() + listed.damaged.len(), 3, "{name}");

    let report = repair::run(&open(&f.dir)).unwrap();
    let after = verify::run(&open(&f.dir), 100).unwrap();
    let still: BTreeSet<String> = after.affected.iter().map(|a| a.restore_point.clone()).collect();
    assert!(still.is_subset(&failed), "{name}: after repair, undamaged points are affected: {after:?} ({report:?})");
    assert!(after.damaged_points.is_empty() && after.damaged_index_files.is_empty(), "{name}: {after:?}");
    assert!(after.affected.iter().all(|a| !a.restorable), "{name}: repair left points at risk: {after:?}");
    assert_eq!(failing(&f).into_iter().filter(|p| !failed.contains(p)).count(), 0, "{name}: repair lost a point");
    if failed.is_empty() {
        assert!(after.ok(), "{name}: {after:?}");
    }
}

fn objects(f: &Fixture, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = crate::support::files_under(&f.dir.join(prefix));
    out.sort();
    out
}

/// Packs by whether they hold data or metadata.
fn packs(f: &Fixture, kind_data: bool) -> Vec<PathBuf> {
    let entries = open(&f.dir).index_files().unwrap().entries;
    let mut out: Vec<PathBuf> = entries
        .iter()
        .filter(|(_, e)| e.iter().any(|e| e.kind == BlobKind::Chunk) == kind_data)
        .map(|(p, _)| f.dir.join(lifeline::repo::format::pack_key(p)))
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut data = std::fs::read(path).unwrap();
    let i = at(data.len());
    data[i] ^= 0x40;
    std::fs::write(path, data).unwrap();
}

#[test]
fn an_index_file_deleted() {
    case("index file deleted", |f| std::fs::remove_file(&objects(f, "index")[0]).unwrap());
}

#[test]
fn a_restore_point_object_emptied() {
    case("snapshot emptied", |f| std::fs::write(&objects(f, "snapshots")[1], b"").unwrap());
}

#[test]
fn a_pack_truncated_by_four_bytes() {
    case("data pack truncated", |f| {
        let p = &packs(f, true)[0];
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 4).unwrap();
    });
    case("metadata pack truncated", |f| {
        let p = &packs(f, false)[0];
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 4).unwrap();
    });
}

#[test]
fn one_flipped_byte_anywhere() {
    type Place = (&'static str, fn(usize) -> usize);
    let places: [Place; 4] = [("first", |_| 0), ("middle", |n| n / 2), ("header", |n| n - 20), ("last", |n| n - 1)];
    for (what, at) in places {
        case(&format!("{what} byte of an index file"), |f| flip(&objects(f, "index")[0], at));
        case(&format!("{what} byte of a restore point"), |f| flip(&objects(f, "snapshots")[2], at));
        case(&format!("{what} byte of a data pack"), |f| flip(&packs(f, true)[0], at));
        case(&format!("{what} byte of a metadata pack"), |f| flip(&packs(f, false)[0], at));
    }
}

/// A prune mark or a key slot that cannot be parsed blocks nothing: backups, prunes and
/// the other keys go on; verify names the mark and repair sets it aside.
#[test]
fn a_damaged_prune_mark_or_key_slot_blocks_nothing() {
    let f = fixture();
    std::fs::create_dir_all(f.dir.join("prune")).unwrap();
    let mark = f.dir.join("prune").join("ab".repeat(32));
    std::fs::write(&mark, b"{\"marked\": 1, \"packs\": [tr").unwrap();
    std::fs::write(f.dir.join("keys").join("cd".repeat(32)), b"not a key slot").unwrap();
    let repo = open(&f.dir);
    let (_, snap) = super::backup(&repo, &f.points[0].2);
    lifeline::repo::prune::prune(&repo, std::time::Duration::ZERO).unwrap();
    let report = verify::run(&open(&f.dir), 100).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.damaged_marks, vec![format!("prune/{}", "ab".repeat(32))]);
    let out = f.dir.parent().unwrap().join("after-damaged-mark");
    super::restore(&open(&f.dir), &snap, &out);
    assert_eq!(describe(&out), describe(&f.points[0].2));
    repair::run(&open(&f.dir)).unwrap();
    assert!(!mark.exists() && f.dir.join("damaged/prune").join("ab".repeat(32)).exists());
    assert!(verify::run(&open(&f.dir), 100).unwrap().damaged_marks.is_empty());
}
