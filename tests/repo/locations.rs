//! The whole life of a repository on real storage: two S3 regions (SeaweedFS) and
//! `file://`: backup, incremental, restore, copy to the other region and restore from
//! there, retention with prune, verification.

use super::{backup, bytes, change_pages, init, restore, volume};
use crate::repo::roundtrip::describe;
use crate::support::s3;
use lifeline::repo::prune::{self, Retention};
use lifeline::repo::{Repository, copy, verify};
use lifeline::store::{self, Backend, LocationOptions};
use std::sync::Arc;
use std::time::Duration;

fn life_of_a_repository(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("volume");
    volume(&src);
    let repo = init(a);
    let (first_id, first) = backup(&repo, &src);
    assert!(first.summary.stored_bytes > 6 << 20, "the random table is stored: {:?}", first.summary);

    // Incremental: 1 % of the table's pages change in place, and the log grows.
    change_pages(&src.join("base/table"), 8, 3);
    let mut log = std::fs::read(src.join("log/app.log")).unwrap();
    log.extend(bytes(100_000, 4, true));
    std::fs::write(src.join("log/app.log"), log).unwrap();
    let (second_id, second) = backup(&repo, &src);
    assert_eq!(second.summary.unchanged_files, 1, "PG_VERSION is not read again");
    assert!(
        second.summary.new_bytes < 1 << 20,
        "8 changed pages of a 6 MiB file must not store a megabyte: {:?}",
        second.summary
    );

    let out = tmp.path().join("restored");
    restore(&repo, &second, &out);
    assert_eq!(describe(&out), describe(&src));

    // Copy to the other region, sharing the key so chunks deduplicate by id: the first
    // point, then the second, whose parent there is the copy of the first.
    let replica = Arc::new(Repository::init_with_master(b, &super::secret(), repo.master().clone()).unwrap());
    let (first_copy, _) = copy::run(&repo, &replica, &first_id, &first, Arc::default()).unwrap();
    let (copied, report) = copy::run(&repo, &replica, &second_id, &second, Arc::default()).unwrap();
    assert!(report.packs_verified > 0 && !report.already_present, "{report:?}");
    assert!(report.files_reused > 0, "unchanged files are recorded from the first copy: {report:?}");
    assert_eq!(replica.read_snapshot(&copied).unwrap().parent, Some(first_copy), "the copy's parent");
    let again = copy::run(&repo, &replica, &second_id, &second, Arc::default()).unwrap().1;
    assert!(again.already_present, "a second copy uploads nothing");
    let from_b = tmp.path().join("from-replica");
    restore(&replica, &replica.read_snapshot(&copied).unwrap(), &from_b);
    assert_eq!(describe(&from_b), describe(&src));

    // Retention keeps only the newest point; two prunes (mark, then delete) free space.
    let stored = |r: &Repository| r.backend().list("data/").unwrap().iter().map(|o| o.size).sum::<u64>();
    let before = stored(&repo);
    let kept = prune::forget(&repo, &Retention { keep_last: Some(1), ..Default::default() }, false).unwrap();
    assert_eq!(kept.iter().filter(|d| !d.keep).count(), 1);
    let marked = prune::prune(&repo, Duration::ZERO).unwrap();
    assert_eq!(marked.packs_deleted, 0, "the first prune only marks: {marked:?}");
    let deleted = prune::prune(&repo, Duration::ZERO).unwrap();
    assert_eq!(deleted.packs_deleted, marked.packs_marked, "{deleted:?}");
    assert!(marked.packs_marked > 0, "forgetting a point must make something deletable: {marked:?}");
    assert!(stored(&repo) < before, "prune freed nothing: {before} bytes before, {} after", stored(&repo));
    let after = tmp.path().join("after-prune");
    restore(&repo, &repo.find_snapshot("latest").unwrap().1, &after);
    assert_eq!(describe(&after), describe(&src));

    for r in [&repo, &replica] {
        let report = verify::run(r, 100).unwrap();
        assert!(report.ok(), "{:?}", report.bad_blobs);
        assert!(report.blobs_checked > 0);
    }
}

#[test]
fn on_two_s3_regions() {
    let (a, b) = s3::regions();
    let name = s3::unique("life");
    life_of_a_repository(a.open(&format!("s3://lifeline/{name}")), b.open(&format!("s3://lifeline/{name}")));
}

#[test]
fn on_local_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |d: &str| {
        let url = format!("file://{}", tmp.path().join(d).display());
        store::open(&url, &LocationOptions { create: true, ..Default::default() }).unwrap()
    };
    life_of_a_repository(open("a"), open("b"));
}

/// Small files backed up one after another sit side by side in a pack: a restore fetches
/// them together, a few requests for a whole directory instead of one or more per file.
#[test]
fn a_directory_of_small_files_restores_in_few_requests() {
    let (a, _) = s3::regions();
    let url = format!("s3://lifeline/{}", s3::unique("small"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("volume");
    std::fs::create_dir_all(src.join("conf")).unwrap();
    for i in 0..200u64 {
        let len = 1_000 + (i as usize * 997) % 30_000;
        std::fs::write(src.join(format!("conf/f{i:03}")), bytes(len, i, i % 2 == 0)).unwrap();
    }
    let (id, snap) = backup(&init(a.open(&url)), &src);

    let (_, requests) = restore_counting_requests(a.open(&url), &id, &src, &tmp.path().join("restored"));
    // The index, trees and recipes take a few; the 200 files' data a handful more.
    assert!(
        requests <= 20,
        "{requests} requests to restore 200 small files ({} stored bytes)",
        snap.summary.stored_bytes
    );
}

/// Two copies of one large file share every blob, but each copy is restored by jobs of
/// its own, at the same time: a restore from an object store reads each stretch of a pack
/// once for both (one job waits for the other's read or finds it kept), not once per copy.
#[test]
fn copies_of_a_large_file_restore_reading_each_pack_once() {
    let (a, _) = s3::regions();
    let url = format!("s3://lifeline/{}", s3::unique("copies"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("volume");
    std::fs::create_dir_all(&src).unwrap();
    let content = bytes(40 << 20, 7, false);
    for i in 0..2 {
        std::fs::write(src.join(format!("copy-{i}")), &content).unwrap();
    }
    let (id, _) = backup(&init(a.open(&url)), &src);

    let (repo, requests) = restore_counting_requests(a.open(&url), &id, &src, &tmp.path().join("restored"));
    let packs = repo.backend().list("data/").unwrap().len() as u64;
    // One read per pack (the pack where a job's 32 MiB end is read by both of the
    // copy's jobs), plus the restore point, index, trees and recipes. Read per copy,
    // it was about twice as many.
    assert!(requests <= packs + 6, "{requests} requests to restore 2 copies of a file stored in {packs} packs");
}

/// Restores restore point `id` of the repository at `location` into `out`, checks it
/// equals `src`, and returns the repository and the requests the restore made.
fn restore_counting_requests(
    location: Arc<dyn Backend>,
    id: &lifeline::repo::format::Id,
    src: &std::path::Path,
    out: &std::path::Path,
) -> (Arc<Repository>, u64) {
    let metered = Arc::new(store::Metered::new(location));
    let meters = metered.meters.clone();
    let repo = Arc::new(Repository::open(metered, &super::secret()).unwrap());
    let before = meters.request_count();
    restore(&repo, &repo.read_snapshot(id).unwrap(), out);
    assert_eq!(describe(out), describe(src));
    let requests = meters.request_count() - before;
    (repo, requests)
}

/// A copy of a directory too large to decode whole (its tree is streamed) with a
/// subdirectory among its entries: the copy restores to the same files, its tree is the
/// source's (same key, same chunks), and the next copy records every unchanged file from
/// the first one, reading the content of the changed file only.
#[test]
fn a_copy_of_a_large_directory_is_exact_and_the_next_one_reads_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("m-sub")).unwrap();
    let long = "n".repeat(230);
    for i in 0..9000u64 {
        std::fs::write(src.join(format!("{long}-{i:05}")), bytes(300 + i as usize % 700, i, false)).unwrap();
    }
    std::fs::write(src.join("m-sub/inner"), bytes(70_000, 3, false)).unwrap();
    let repo = init(super::local(&tmp.path().join("a")));
    let (first_id, first) = backup(&repo, &src);
    let replica = Arc::new(
        Repository::init_with_master(super::local(&tmp.path().join("b")), &super::secret(), repo.master().clone())
            .unwrap(),
    );
    let (copied, report) = copy::run(&repo, &replica, &first_id, &first, Arc::default()).unwrap();
    assert_eq!((report.files_copied, report.files_reused), (9001, 0), "{report:?}");
    let copy = replica.read_snapshot(&copied).unwrap();
    assert_eq!(copy.root.subtree, first.root.subtree, "the same tree");
    let out = tmp.path().join("out");
    restore(&replica, &copy, &out);
    assert_eq!(describe(&out), describe(&src));

    std::fs::write(src.join(format!("{long}-04500")), bytes(900, 77, false)).unwrap();
    let (second_id, second) = backup(&repo, &src);
    let (copied, report) = copy::run(&repo, &replica, &second_id, &second, Arc::default()).unwrap();
    assert_eq!((report.files_copied, report.files_reused), (1, 9000), "{report:?}");
    let copy = replica.read_snapshot(&copied).unwrap();
    assert_eq!(copy.root.subtree, second.root.subtree);
    let out = tmp.path().join("out2");
    restore(&replica, &copy, &out);
    assert_eq!(describe(&out), describe(&src));
}
