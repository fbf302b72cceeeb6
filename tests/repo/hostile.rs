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
    let before = describe(&outside);
    // Both ways into a non-empty target: replacing, and in place (which also deletes
    // what the point does not have: here a symlink to a directory outside).
    for (i, opts) in [
        RestoreOptions { overwrite: true, ..Default::default() },
        RestoreOptions { in_place: true, ..Default::default() },
    ]
    .into_iter()
    .enumerate()
    {
        let target = tmp.path().join(format!("target-{i}"));
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("a")).unwrap();
        std::os::unix::fs::symlink(outside.join("sentinel"), target.join("top")).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("stray")).unwrap();
        let plain = restore::run(repo.clone(), &snap, &target, &RestoreOptions::default(), Arc::default());
        assert!(plain.is_err(), "a non-empty target needs --overwrite or --in-place");
        restore::run(repo.clone(), &snap, &target, &opts, Arc::default()).unwrap();
        assert_eq!(describe(&outside), before, "{opts:?}: something was written outside the target");
        assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"keep me");
        assert!(std::fs::symlink_metadata(target.join("a")).unwrap().is_dir(), "the symlink became a directory");
        if opts.in_place {
            assert_eq!(describe(&target), describe(&src));
        } else {
            std::fs::remove_file(target.join("stray")).unwrap();
            assert_eq!(describe(&target), describe(&src));
        }
    }
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

/// Finding: a file or directory deleted while the backup ran failed the whole backup.
#[test]
fn entries_that_vanish_during_a_backup_are_left_out_and_named() {
    use lifeline::repo::backup::{self, BackupOptions};
    let tmp = tempfile::tempdir().unwrap();
    let backend = local(&tmp.path().join("repo"));
    init(backend.clone());
    let make = |src: &std::path::Path, seed: u64| {
        std::fs::create_dir_all(src.join("zz-dir")).unwrap();
        // Far more than the backup holds in flight (its read blocks and packs being
        // sealed), so the first pack is written before the walk gets past this file.
        std::fs::write(src.join("aa-big"), bytes(64 << 20, seed, false)).unwrap();
        for i in 0..200 {
            std::fs::write(src.join(format!("m{i:03}")), bytes(100, i, true)).unwrap();
        }
        std::fs::write(src.join("zz-file"), b"soon gone").unwrap();
        std::fs::write(src.join("zz-dir/inner"), b"soon gone").unwrap();
    };
    // Deletes `paths` when the first pack is written: entries that vanish mid-backup.
    let open = |paths: Vec<std::path::PathBuf>| {
        let paths = std::sync::Mutex::new(paths);
        let hook = move |key: &str| {
            if key.starts_with("data/") {
                for p in paths.lock().unwrap().drain(..) {
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        };
        let b = Arc::new(super::Hooked { inner: backend.clone(), when: super::Hook::Put, hook: Box::new(hook) });
        Arc::new(lifeline::repo::Repository::open(b, &super::secret()).unwrap())
    };
    let src = tmp.path().join("src");
    make(&src, 5);
    let (_, snap) = backup::run(
        open(vec![src.join("zz-file"), src.join("zz-dir")]),
        &src,
        &BackupOptions::default(),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(snap.summary.skipped, 2, "{:?}", snap.summary);
    assert!(snap.summary.skipped_paths.iter().any(|p| p.starts_with("zz-file: vanished")), "{:?}", snap.summary);
    let out = tmp.path().join("out");
    super::restore(&open(vec![]), &snap, &out);
    assert_eq!(describe(&out), describe(&src), "everything that was still there is in the point");

    // --strict makes it fatal.
    make(&src, 6);
    let strict = BackupOptions { strict: true, ..Default::default() };
    let err = backup::run(open(vec![src.join("zz-file")]), &src, &strict, Arc::default()).unwrap_err();
    assert!(err.to_string().contains("zz-file"), "{err}");
}

/// Finding: a path longer than 4096 bytes failed the whole backup.
#[test]
fn paths_of_any_length_back_up_and_restore() {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(local(&tmp.path().join("repo")));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let name = "d".repeat(200);
    // 30 levels of 200 bytes: about 6000 bytes of path, made through directory handles.
    let mut handles = vec![std::fs::File::open(&src).unwrap()];
    for _ in 0..30 {
        let here = format!("/proc/self/fd/{}", handles.last().unwrap().as_raw_fd());
        std::fs::create_dir(format!("{here}/{name}")).unwrap();
        handles.push(std::fs::File::open(format!("{here}/{name}")).unwrap());
    }
    let deepest = format!("/proc/self/fd/{}", handles.last().unwrap().as_raw_fd());
    std::fs::write(format!("{deepest}/leaf"), b"deep down").unwrap();
    drop(handles);

    let (_, snap) = super::backup(&repo, &src);
    assert_eq!(snap.summary.skipped, 0);
    let out = tmp.path().join("out");
    super::restore(&repo, &snap, &out);
    let mut at = std::fs::File::open(&out).unwrap();
    for level in 0..30 {
        at = std::fs::File::open(format!("/proc/self/fd/{}/{name}", at.as_raw_fd()))
            .unwrap_or_else(|e| panic!("level {level}: {e}"));
    }
    assert_eq!(std::fs::read(format!("/proc/self/fd/{}/leaf", at.as_raw_fd())).unwrap(), b"deep down");
}

fn xattrs(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    lifeline::repo::source::read_xattrs(path)
}

/// Finding: extended attributes (`user.*`, `security.capability`) were dropped silently.
#[test]
fn extended_attributes_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(local(&tmp.path().join("repo")));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/tool"), b"#!/bin/sh\n").unwrap();
    let set = |p: &std::path::Path, name: &str, value: &[u8]| {
        let (c, n) =
            (std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap(), std::ffi::CString::new(name).unwrap());
        // SAFETY: valid strings and buffer.
        let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(r, 0, "{name}: {}", std::io::Error::last_os_error());
    };
    set(&src.join("dir/tool"), "user.origin", b"build 42");
    set(&src.join("dir"), "user.team", b"payments");
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // CAP_NET_BIND_SERVICE, permitted and effective (VFS_CAP_REVISION_2).
        let cap = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        set(&src.join("dir/tool"), "security.capability", &cap);
    }
    let (_, snap) = super::backup(&repo, &src);
    let out = tmp.path().join("out");
    super::restore(&repo, &snap, &out);
    assert_eq!(xattrs(&out.join("dir")), xattrs(&src.join("dir")));
    let restored = xattrs(&out.join("dir/tool"));
    assert_eq!(restored, xattrs(&src.join("dir/tool")));
    assert!(restored.contains_key("user.origin"));
    if root {
        assert!(restored.contains_key("security.capability"), "{restored:?}");
    }
}
