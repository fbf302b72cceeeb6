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
    let (_, first) = backup(&repo, &src);
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

    // Copy to the other region, sharing the key so chunks deduplicate by id.
    let replica = Arc::new(Repository::init_with_master(b, &super::secret(), repo.master().clone()).unwrap());
    let (copied, report) = copy::run(&repo, &replica, &second_id, &second, Arc::default()).unwrap();
    assert!(report.packs_verified > 0 && !report.already_present, "{report:?}");
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
