//! Hostile and unusual inputs: targets with symlinks planted in them, partial restores of
//! hard links, paths that do not exist.

use super::roundtrip::describe;
use super::{bytes, init, local};
use lifeline::repo::restore::{self, RestoreOptions};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Finding: `restore --overwrite` followed a symlinked directory planted in the target
/// and wrote (and hard-linked) outside it.
#[test]
fn a_restore_never_writes_through_a_symlink_out_of_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(local(&tmp.path().join("repo")));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/h1"), bytes(5000, 1, false)).unwrap();
    std::fs::hard_link(src.join("a/h1"), src.join("a/h2")).unwrap();
    std::fs::write(src.join("top"), b"top").unwrap();
    let (_, snap) = super::backup(&repo, &src);

    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"keep me").unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("a")).unwrap();
    std::os::unix::fs::symlink(outside.join("sentinel"), target.join("top")).unwrap();
    let before = describe(&outside);

    let plain = restore::run(repo.clone(), &snap, &target, &RestoreOptions::default(), Arc::default());
    assert!(plain.is_err(), "a non-empty target needs --overwrite");
    let opts = RestoreOptions { overwrite: true, ..Default::default() };
    restore::run(repo.clone(), &snap, &target, &opts, Arc::default()).unwrap();
    assert_eq!(describe(&outside), before, "something was written outside the target");
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(target.join("a")).unwrap().is_dir(), "the symlink became a directory");
    assert_eq!(describe(&target), describe(&src));
}

/// Finding: `--include b` failed when `b/h2` was the second link of a file whose first
/// link is outside `b`; `--include does/not/exist` succeeded with nothing restored.
#[test]
fn partial_restores_of_hard_links_and_missing_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(local(&tmp.path().join("repo")));
    let src = tmp.path().join("src");
    for d in ["a", "b", "c"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("a/h1"), bytes(70_000, 3, false)).unwrap();
    std::fs::hard_link(src.join("a/h1"), src.join("b/h2")).unwrap();
    std::fs::hard_link(src.join("a/h1"), src.join("b/h3")).unwrap();
    std::fs::write(src.join("c/other"), b"other").unwrap();
    let (_, snap) = super::backup(&repo, &src);

    let only_b = tmp.path().join("only-b");
    let opts = RestoreOptions { include: vec!["b".into()], ..Default::default() };
    restore::run(repo.clone(), &snap, &only_b, &opts, Arc::default()).unwrap();
    assert_eq!(std::fs::read(only_b.join("b/h2")).unwrap(), std::fs::read(src.join("a/h1")).unwrap());
    let (m2, m3) = (std::fs::metadata(only_b.join("b/h2")).unwrap(), std::fs::metadata(only_b.join("b/h3")).unwrap());
    assert_eq!(m2.ino(), m3.ino(), "the two links inside b stay one file");
    assert!(!only_b.join("a").exists() && !only_b.join("c").exists());

    let both = tmp.path().join("both");
    let opts = RestoreOptions { include: vec!["b/h2".into(), "a".into()], ..Default::default() };
    restore::run(repo.clone(), &snap, &both, &opts, Arc::default()).unwrap();
    let (m1, m2) = (std::fs::metadata(both.join("a/h1")).unwrap(), std::fs::metadata(both.join("b/h2")).unwrap());
    assert_eq!(m1.ino(), m2.ino());

    let missing = tmp.path().join("missing");
    let opts = RestoreOptions { include: vec!["does/not/exist".into()], ..Default::default() };
    let err = restore::run(repo.clone(), &snap, &missing, &opts, Arc::default()).unwrap_err();
    assert_eq!(err.category(), "InvalidArgument", "{err}");
    assert!(err.to_string().contains("does/not/exist"), "{err}");
    assert!(!missing.exists(), "nothing is created for a bad --include");
}

/// Finding: the host of a `file://` URL was ignored (`file://backup-server/x` wrote to
/// `/x`), `file://relrepo` made a repository in `/`, and `%20` was not decoded.
#[test]
fn file_urls_are_read_as_rfc_8089_says() {
    use lifeline::store::{LocationOptions, file_path, open};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().display().to_string();
    assert_eq!(file_path(&format!("file://{base}/a%20b")).unwrap(), tmp.path().join("a b"));
    assert_eq!(file_path(&format!("file://localhost{base}/x")).unwrap(), tmp.path().join("x"));
    let create = LocationOptions { create: true, ..Default::default() };
    open(&format!("file://{base}/with%20space"), &create).unwrap();
    assert!(tmp.path().join("with space").is_dir());
    for bad in
        [format!("file://backup-server{base}/x"), "file://relrepo".into(), "file:relrepo".into(), "file:///".into()]
    {
        let err = open(&bad, &create).err().unwrap_or_else(|| panic!("{bad} was accepted"));
        assert_eq!(err.category(), "InvalidLocation", "{bad}: {err}");
    }
    assert!(!std::path::Path::new(&format!("{base}/x")).exists());
    assert!(!std::path::Path::new("/relrepo").exists());
}
