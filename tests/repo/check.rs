//! A restore is checked against its restore point by reading it back: what a user would
//! otherwise find out only when the database refuses to start.

use super::{backup, init, local, restore, volume};
use lifeline::repo::check;
use std::os::unix::fs::FileExt;

#[test]
fn a_restore_checks_clean_and_every_kind_of_difference_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    volume(&data);
    std::os::unix::fs::symlink("base/table", data.join("current")).unwrap();
    let repo = init(local(&dir.path().join("repo")));
    let (_, snap) = backup(&repo, &data);
    let target = dir.path().join("target");
    // A fresh filesystem's lost+found neither blocks the restore nor counts as extra.
    std::fs::create_dir_all(target.join("lost+found")).unwrap();
    restore(&repo, &snap, &target);

    let clean = check::run(&repo, &snap, &target, &[]).unwrap();
    assert!(clean.ok(), "{}", clean.summary());
    assert_eq!((clean.files, clean.files_matching), (3, 3));
    assert_eq!(clean.bytes, snap.summary.bytes);
    assert_eq!(clean.digest, clean.found_digest);

    // One page changed in place, one file short, one gone, one extra, a link moved.
    let table = std::fs::OpenOptions::new().write(true).open(target.join("base/table")).unwrap();
    table.write_all_at(&[0xff; 8192], 3 << 20).unwrap();
    let log = target.join("log/app.log");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(len - 1).unwrap();
    std::fs::remove_file(target.join("PG_VERSION")).unwrap();
    std::fs::write(target.join("stray"), b"x").unwrap();
    std::fs::remove_file(target.join("current")).unwrap();
    std::os::unix::fs::symlink("elsewhere", target.join("current")).unwrap();

    let bad = check::run(&repo, &snap, &target, &[]).unwrap();
    assert!(!bad.ok());
    assert_eq!((bad.missing, bad.differing, bad.unexpected), (1, 3, 1), "{:?}", bad.differences);
    assert_eq!(bad.files_matching, 0);
    assert_ne!(bad.digest, bad.found_digest);
    assert_eq!(bad.digest, clean.digest, "the record's digest does not depend on the target");
    let all = bad.differences.join("\n");
    for want in [
        "base/table: content differs in bytes ",
        &format!("log/app.log: {} bytes instead of {len}", len - 1),
        "PG_VERSION: missing",
        "stray: not in the restore point",
        "current: link to elsewhere instead of base/table",
    ] {
        assert!(all.contains(want), "{want:?} not in:\n{all}");
    }
    assert!(bad.summary().starts_with("0 of 3 files"), "{}", bad.summary());

    // A partial restore is checked only where it restored.
    let part = dir.path().join("part");
    lifeline::repo::restore::run(
        repo.clone(),
        &snap,
        &part,
        &lifeline::repo::restore::RestoreOptions { include: vec!["log".into()], ..Default::default() },
        Default::default(),
    )
    .unwrap();
    let some = check::run(&repo, &snap, &part, &["log".into()]).unwrap();
    assert!(some.ok(), "{}", some.summary());
    assert_eq!(some.files, 1);
}

/// A directory of more files than the check reads back at once: every file is counted
/// once, a difference in a later batch and an extra entry in a subdirectory named in the
/// middle of the listing are found, and once repaired the target checks to the digest it
/// had before.
#[test]
fn a_check_of_thousands_of_files_in_one_directory_finds_every_difference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("m-sub")).unwrap();
    let n = 5000;
    for i in 0..n {
        std::fs::write(data.join(format!("f{i:05}")), format!("file {i}")).unwrap();
    }
    std::fs::write(data.join("m-sub/inner"), "inner").unwrap();
    let repo = init(local(&dir.path().join("repo")));
    let (_, snap) = backup(&repo, &data);
    let target = dir.path().join("target");
    restore(&repo, &snap, &target);

    let clean = check::run(&repo, &snap, &target, &[]).unwrap();
    assert!(clean.ok(), "{}", clean.summary());
    assert_eq!((clean.files, clean.files_matching), (n + 1, n + 1));
    assert_eq!(clean.bytes, snap.summary.bytes);

    std::fs::write(target.join("f04999"), "file 4998").unwrap();
    std::fs::remove_file(target.join("f00002")).unwrap();
    std::fs::write(target.join("m-sub/stray"), "x").unwrap();
    let bad = check::run(&repo, &snap, &target, &[]).unwrap();
    assert_eq!((bad.missing, bad.differing, bad.unexpected), (1, 1, 1), "{:?}", bad.differences);
    assert_eq!((bad.files, bad.files_matching), (n + 1, n - 1));
    assert_eq!(bad.digest, clean.digest);
    assert_ne!(bad.found_digest, clean.found_digest);
    let all = bad.differences.join("\n");
    for want in ["f00002: missing", "f04999: content differs in bytes 0..9", "m-sub/stray: not in the restore point"] {
        assert!(all.contains(want), "{want:?} not in:\n{all}");
    }
    // Repaired, the target checks to the recorded digest again.
    std::fs::write(target.join("f04999"), "file 4999").unwrap();
    std::fs::write(target.join("f00002"), "file 2").unwrap();
    std::fs::remove_file(target.join("m-sub/stray")).unwrap();
    let again = check::run(&repo, &snap, &target, &[]).unwrap();
    assert!(again.ok(), "{}", again.summary());
    assert_eq!(again.found_digest, clean.found_digest);
}
