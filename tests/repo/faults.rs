//! What users see when things go wrong, and that nothing is lost when they do.

use super::{backup, bytes, init, local, restore, secret, volume};
use crate::repo::roundtrip::describe;
use crate::support::s3::{self, S3Server};
use lifeline::repo::backup::Progress;
use lifeline::repo::prune::{self, Retention};
use lifeline::repo::{RepoError, Repository, lock, verify};
use lifeline::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[test]
fn server_killed_mid_backup_then_the_next_backup_reuses_what_was_uploaded() {
    let mut server = S3Server::start("lifeline");
    let url = format!("s3://lifeline/{}", s3::unique("killed"));
    let repo = init(server.open(&url));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), bytes(8 << 20, 100 + i, false)).unwrap();
    }

    let progress = Arc::new(Progress::default());
    let handle = {
        let (repo, src, progress) = (repo.clone(), src.clone(), progress.clone());
        std::thread::spawn(move || lifeline::repo::backup::run(repo, &src, &Default::default(), progress))
    };
    // Kill the server once a few packs (data and their metadata) are up, while the
    // backup is still going.
    let probe = server.open(&url);
    let deadline = Instant::now() + Duration::from_secs(120);
    while probe.list("data/").map(|l| l.len()).unwrap_or(0) < 6 {
        assert!(Instant::now() < deadline, "no pack was uploaded");
        assert!(!handle.is_finished(), "the backup finished before the server could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let err = handle.join().unwrap().expect_err("a backup to a dead server must fail");
    assert_eq!(err.category(), "LocationUnreachable", "{err}");
    assert!(err.to_string().contains(&url) && err.hint().contains("can be retried") && err.retryable(), "{err}");
    assert!(progress.bytes_done.load(Relaxed) > 0);

    server.restart();
    let repo = Arc::new(Repository::open(server.open(&url), &secret()).unwrap());
    let report = verify::run(&repo, 100).unwrap();
    assert!(report.ok(), "the interrupted backup left a broken repository: {:?}", report.bad_blobs);
    assert!(repo.snapshots().unwrap().is_empty(), "no restore point is recorded for a failed run");

    let (_, snap) = backup(&repo, &src);
    let total = 8 * (8u64 << 20);
    assert!(
        snap.summary.new_bytes < total - (8 << 20),
        "the second run should reuse the packs the first uploaded: {:?}",
        snap.summary
    );
    let out = tmp.path().join("out");
    restore(&repo, &snap, &out);
    assert_eq!(describe(&out), describe(&src));
}

#[test]
fn a_flipped_byte_is_found_and_never_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("volume");
    volume(&src);
    let repo = init(local(&tmp.path().join("repo")));
    let (first_id, _) = backup(&repo, &src);
    std::fs::write(src.join("PG_VERSION"), b"18\n").unwrap();
    let (second_id, second) = backup(&repo, &src);

    // Flip one byte inside the largest data pack (the random table lives there).
    let mut packs: Vec<_> = crate::support::files_under(&tmp.path().join("repo/data"));
    packs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    let mut data = std::fs::read(&packs[0]).unwrap();
    data[1000] ^= 0x40;
    std::fs::write(&packs[0], data).unwrap();

    let report = verify::run(&repo, 100).unwrap();
    assert_eq!(report.bad_blobs.len(), 1, "{:?}", report.bad_blobs);
    let points: Vec<&str> = report.affected.iter().map(|a| a.restore_point.as_str()).collect();
    assert!(points.contains(&first_id.hex().as_str()) && points.contains(&second_id.hex().as_str()), "{report:?}");
    assert!(report.affected.iter().all(|a| a.paths == vec!["base/table".to_string()]), "{:?}", report.affected);

    let err = lifeline::repo::restore::run(
        repo.clone(),
        &second,
        &tmp.path().join("out"),
        &Default::default(),
        Arc::default(),
    )
    .expect_err("a corrupt chunk must not be restored");
    let msg = err.to_string();
    assert!(
        msg.contains("corrupted data") && msg.contains("refusing to restore") && msg.contains("base/table"),
        "{msg}"
    );
    assert_eq!(err.category(), "Corrupted");
}

#[test]
fn a_wrong_key_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    init(backend.clone());
    let wrong = lifeline::repo::Secret::Passphrase(zeroize::Zeroizing::new(b"not the passphrase".to_vec()));
    let err = Repository::open(backend, &wrong).err().expect("wrong key accepted");
    assert!(matches!(err, RepoError::WrongKey { .. }));
    assert!(err.to_string().contains("wrong key"), "{err}");
    assert!(err.hint().contains("passphrase the repository was created with"), "{}", err.hint());
}

#[test]
fn an_object_locked_bucket_takes_backups_and_prunes_but_no_overwrite() {
    let (server, _) = s3::regions();
    let bucket = s3::unique("locked");
    server.admin(&["create-locked-bucket", &bucket, "1"]);
    let url = format!("s3://{bucket}/repo");
    let backend = server.open(&url);
    let repo = init(backend.clone());
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("volume");
    volume(&src);
    backup(&repo, &src);
    super::change_pages(&src.join("base/table"), 64, 9);
    let (_, latest) = backup(&repo, &src);

    prune::forget(&repo, &Retention { keep_last: Some(1), ..Default::default() }, false).unwrap();
    prune::prune(&repo, Duration::ZERO).unwrap();
    prune::prune(&repo, Duration::ZERO).unwrap();
    let out = tmp.path().join("out");
    restore(&repo, &latest, &out);
    assert_eq!(describe(&out), describe(&src));

    // Lifeline never overwrites...
    let err = backend.put_new("config", bytes::Bytes::from_static(b"{}")).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    // ...and the bucket refuses to drop a locked version, even with full credentials.
    assert_eq!(server.admin(&["delete-oldest-version", &bucket, "repo/config"]), "403");
}

#[test]
fn prune_waits_for_writers_that_started_before_its_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    let repo = init(backend.clone());
    let src = tmp.path().join("volume");
    volume(&src);
    backup(&repo, &src);
    std::fs::write(src.join("base/table"), bytes(6 << 20, 77, false)).unwrap();
    backup(&repo, &src);
    prune::forget(&repo, &Retention { keep_last: Some(1), ..Default::default() }, false).unwrap();

    // A writer is running (it may reuse anything the index listed when it started).
    let writer = lock::acquire(backend.clone(), "backup", false).unwrap();
    let first = prune::prune(&repo, Duration::ZERO).unwrap();
    assert!(first.packs_marked > 0, "{first:?}");
    let second = prune::prune(&repo, Duration::ZERO).unwrap();
    assert_eq!(second.packs_deleted, 0, "deleted data a running writer may need: {second:?}");
    assert_eq!(second.packs_waiting, first.packs_marked);
    drop(writer);
    let third = prune::prune(&repo, Duration::ZERO).unwrap();
    assert!(third.packs_deleted >= first.packs_marked, "{third:?}");
    assert!(verify::run(&repo, 100).unwrap().ok());
}
