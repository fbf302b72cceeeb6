//! Backup then restore gives back the same tree, byte for byte, metadata included:
//! random trees with every file type, holes, hard links, empty and large files.

use lifeline::repo::Repository;
use lifeline::repo::restore::{self, RestoreOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn local_repo(dir: &Path) -> Arc<Repository> {
    super::init(super::local(dir))
}

fn backup(repo: &Arc<Repository>, path: &Path) -> (lifeline::repo::format::Id, lifeline::repo::format::Snapshot) {
    super::backup(repo, path)
}

fn restore_to(repo: &Arc<Repository>, snap: &lifeline::repo::format::Snapshot, target: &Path) {
    super::restore(repo, snap, target)
}

/// A restore that writes files of 1 MiB or more with `O_DIRECT` (`--direct-io`; by
/// default every file goes through the page cache).
fn restore_direct(repo: &Arc<Repository>, snap: &lifeline::repo::format::Snapshot, target: &Path) {
    let opts = RestoreOptions { direct: true, ..Default::default() };
    restore::run(repo.clone(), snap, target, &opts, Arc::default()).unwrap();
}

/// What a user would compare: type, content, permissions, mtime, link target, and which
/// paths share an inode.
pub fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, inodes: &mut BTreeMap<u64, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let mode = m.permissions().mode() & 0o7777;
        let desc = if ft.is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            walk(root, &p, out, inodes);
            format!("dir {mode:o} {}", m.mtime())
        } else if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
            format!(
                "file {mode:o} {}.{} len {} hash {} linked-to {first} holes {}",
                m.mtime(),
                m.mtime_nsec(),
                data.len(),
                blake3::hash(&data).to_hex(),
                m.blocks() * 512 < m.size()
            )
        } else {
            format!("special {mode:o}")
        };
        out.insert(rel, desc);
    }
}

#[derive(Debug, Clone)]
enum Entry {
    File { len: usize, seed: u8, mode: u32 },
    Sparse { len: u64, at: u64 },
    Empty,
    Dir,
    Symlink(String),
    HardlinkToFirstFile,
    Fifo,
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        4 => (prop_oneof![0usize..100, 1000usize..200_000, 300_000usize..3_000_000], any::<u8>(), prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o4755)])
            .prop_map(|(len, seed, mode)| Entry::File { len, seed, mode }),
        1 => (1u64..20_000_000, 0u64..20_000_000).prop_map(|(len, at)| Entry::Sparse { len, at: at % len }),
        1 => Just(Entry::Empty),
        1 => Just(Entry::Dir),
        1 => "[a-z]{1,8}(/[a-z]{1,8})?".prop_map(Entry::Symlink),
        1 => Just(Entry::HardlinkToFirstFile),
        1 => Just(Entry::Fifo),
    ]
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    // Alternating 50 kB of text and of noise, so both storage paths are exercised.
    let mut out = Vec::with_capacity(len);
    let mut block = 0u64;
    while out.len() < len {
        let n = (len - out.len()).min(50_000);
        out.extend(super::bytes(n, seed as u64 * 1000 + block, block.is_multiple_of(2)));
        block += 1;
    }
    out
}

fn build(root: &Path, entries: &[Entry]) {
    std::fs::create_dir_all(root).unwrap();
    let mut first_file: Option<PathBuf> = None;
    for (i, e) in entries.iter().enumerate() {
        let dir = if i % 3 == 2 { root.join("nested/deeper") } else { root.to_path_buf() };
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("e{i}"));
        match e {
            Entry::File { len, seed, mode } => {
                std::fs::write(&p, content(*len, *seed)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                first_file.get_or_insert(p.clone());
            }
            Entry::Sparse { len, at } => {
                let f = std::fs::File::create(&p).unwrap();
                f.set_len(*len).unwrap();
                std::os::unix::fs::FileExt::write_at(&f, b"data in a hole", *at).unwrap();
            }
            Entry::Empty => std::fs::write(&p, b"").unwrap(),
            Entry::Dir => std::fs::create_dir(&p).unwrap(),
            Entry::Symlink(t) => std::os::unix::fs::symlink(t, &p).unwrap(),
            Entry::HardlinkToFirstFile => match &first_file {
                Some(f) => std::fs::hard_link(f, &p).unwrap(),
                None => std::fs::write(&p, b"no file yet").unwrap(),
            },
            Entry::Fifo => {
                let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
                // SAFETY: valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip_and_so_do_their_incrementals(
        entries in prop::collection::vec(entry(), 1..14),
        change in any::<u8>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        build(&src, &entries);
        let repo = local_repo(&tmp.path().join("repo"));
        let (_, first) = backup(&repo, &src);
        let want_first = describe(&src);

        // Change something in place, append, add a file, then back up again.
        let victim = src.join("e0");
        if victim.is_file() && !victim.is_symlink() {
            let mut data = std::fs::read(&victim).unwrap();
            if !data.is_empty() {
                let i = change as usize % data.len();
                data[i] ^= 0xff;
            }
            data.extend_from_slice(b"appended");
            std::fs::write(&victim, data).unwrap();
        }
        std::fs::write(src.join("added"), content(70_000, change)).unwrap();
        let (_, second) = backup(&repo, &src);
        prop_assert!(second.parent.is_some());

        let out1 = tmp.path().join("out1");
        restore_to(&repo, &first, &out1);
        prop_assert_eq!(describe(&out1), want_first);
        let out2 = tmp.path().join("out2");
        restore_direct(&repo, &second, &out2);
        prop_assert_eq!(describe(&out2), describe(&src));
    }
}

#[test]
fn unchanged_files_are_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build(&src, &[Entry::File { len: 2_000_000, seed: 1, mode: 0o644 }, Entry::File { len: 10, seed: 2, mode: 0o644 }]);
    let repo = local_repo(&tmp.path().join("repo"));
    backup(&repo, &src);
    let (_, again) = backup(&repo, &src);
    assert_eq!(again.summary.bytes_read, 0);
    assert_eq!(again.summary.new_bytes, 0);
    assert_eq!(again.summary.unchanged_files, 2);
}

#[test]
fn a_block_image_round_trips_with_its_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("disk.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &content(3_000_000, 9), 10 << 20).unwrap();
    drop(f);
    let repo = local_repo(&tmp.path().join("repo"));
    let (_, snap) = backup(&repo, &img);
    assert_eq!(snap.source, lifeline::repo::format::SourceKind::Block);
    let out = tmp.path().join("restored.img");
    restore_to(&repo, &snap, &out);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
}

#[test]
fn restore_refuses_a_non_empty_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build(&src, &[Entry::Empty]);
    let repo = local_repo(&tmp.path().join("repo"));
    let (_, snap) = backup(&repo, &src);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("precious"), b"keep me").unwrap();
    let err = restore::run(repo.clone(), &snap, &out, &RestoreOptions::default(), Arc::default()).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(std::fs::read(out.join("precious")).unwrap(), b"keep me");
}

#[test]
fn selected_paths_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build(&src, &[Entry::Empty, Entry::Empty, Entry::File { len: 100, seed: 3, mode: 0o644 }]);
    let repo = local_repo(&tmp.path().join("repo"));
    let (_, snap) = backup(&repo, &src);
    let out = tmp.path().join("out");
    let opts = RestoreOptions { include: vec!["nested/deeper/e2".into()], ..Default::default() };
    restore::run(repo.clone(), &snap, &out, &opts, Arc::default()).unwrap();
    let got: Vec<String> = describe(&out).into_keys().collect();
    assert_eq!(got, vec!["nested", "nested/deeper", "nested/deeper/e2"]);
}

/// A case proptest found: runs of zeros give repeated segments (restored once per
/// occurrence), a subdirectory sorted before them (whose restore must not drop its
/// parent's prefetched recipes), holes inside chunks, hard links and FIFOs.
#[test]
fn sparse_files_beside_hard_links_and_fifos() {
    for i in 0..10 {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        build(
            &src,
            &[
                Entry::Fifo,
                Entry::Fifo,
                Entry::Dir,
                Entry::File { len: 63, seed: 139, mode: 0o4755 },
                Entry::Symlink("wwvfngsn/a".into()),
                Entry::Sparse { len: 14_001_512, at: 7_077_888 },
                Entry::Sparse { len: 10_540_549, at: 5_633_959 },
                Entry::HardlinkToFirstFile,
                Entry::Sparse { len: 4147, at: 100 },
            ],
        );
        let repo = local_repo(&tmp.path().join("repo"));
        let (_, snap) = backup(&repo, &src);
        let out = tmp.path().join("out");
        if i % 2 == 0 {
            restore_to(&repo, &snap, &out)
        } else {
            restore_direct(&repo, &snap, &out)
        }
        assert_eq!(describe(&out), describe(&src));
    }
}

fn restore_in_place(
    repo: &Arc<Repository>,
    snap: &lifeline::repo::format::Snapshot,
    target: &Path,
) -> restore::RestoreSummary {
    let opts = RestoreOptions { in_place: true, ..Default::default() };
    restore::run(repo.clone(), snap, target, &opts, Arc::default()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// A target holding one random tree, brought in place to another (and back), ends
    /// up exactly like the other: content, holes, metadata, links, and nothing more.
    #[test]
    fn in_place_turns_any_tree_into_any_other(
        a in prop::collection::vec(entry(), 1..12),
        b in prop::collection::vec(entry(), 1..12),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (src_a, src_b) = (tmp.path().join("a"), tmp.path().join("b"));
        build(&src_a, &a);
        build(&src_b, &b);
        std::fs::write(src_b.join("only-in-b"), b"b").unwrap();
        let repo = local_repo(&tmp.path().join("repo"));
        let (_, snap_a) = backup(&repo, &src_a);
        let (_, snap_b) = backup(&repo, &src_b);
        let out = tmp.path().join("out");
        restore_to(&repo, &snap_a, &out);
        restore_in_place(&repo, &snap_b, &out);
        prop_assert_eq!(describe(&out), describe(&src_b));
        let back = restore_in_place(&repo, &snap_a, &out);
        prop_assert_eq!(describe(&out), describe(&src_a));
        prop_assert!(back.removed >= 1, "only-in-b was not deleted");
        let report = lifeline::repo::check::run(&repo, &snap_a, &out, &[]).unwrap();
        prop_assert!(report.ok(), "{}", report.summary());
        // Once more: nothing is left to write.
        let again = restore_in_place(&repo, &snap_a, &out);
        prop_assert_eq!(again.bytes_written, 0);
        prop_assert_eq!(again.removed, 0);
    }
}

/// A database-like volume with 1 % of its pages changed: brought up to date in place,
/// only about that much is written, and the result checks out against the point.
#[test]
fn in_place_writes_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    super::volume(&src);
    let repo = local_repo(&tmp.path().join("repo"));
    let (_, first) = backup(&repo, &src);
    let out = tmp.path().join("out");
    restore_to(&repo, &first, &out);

    // 1 % of the table's 8 KiB pages, a new file, a deleted file, a file that became a
    // directory, and a stray file in the target.
    let table = src.join("base/table");
    let pages = (std::fs::metadata(&table).unwrap().len() / 8192 / 100) as usize;
    super::change_pages(&table, pages, 7);
    std::fs::write(src.join("base/new"), b"new rows").unwrap();
    std::fs::remove_file(src.join("PG_VERSION")).unwrap();
    std::fs::create_dir(src.join("PG_VERSION")).unwrap();
    std::fs::write(out.join("log/stray"), b"not in any point").unwrap();
    let (_, second) = backup(&repo, &src);

    let s = restore_in_place(&repo, &second, &out);
    assert_eq!(describe(&out), describe(&src));
    let total = s.bytes;
    // Differing chunks are fetched whole, but only their differing 4 KiB blocks written.
    assert!(s.bytes_written > 0 && s.bytes_written * 33 < total, "wrote {} of {total} bytes", s.bytes_written);
    assert_eq!(s.unchanged_files, 1, "{s:?}"); // the log
    assert_eq!(s.removed, 1, "{s:?}"); // the stray file
    let report = lifeline::repo::check::run(&repo, &second, &out, &[]).unwrap();
    assert!(report.ok(), "{}", report.summary());

    // A block image the same way.
    let img = tmp.path().join("disk.img");
    std::fs::write(&img, super::bytes(8 << 20, 3, false)).unwrap();
    let (_, i1) = backup(&repo, &img);
    let out_img = tmp.path().join("out.img");
    restore_to(&repo, &i1, &out_img);
    super::change_pages(&img, 10, 11);
    let (_, i2) = backup(&repo, &img);
    let s = restore_in_place(&repo, &i2, &out_img);
    assert_eq!(std::fs::read(&out_img).unwrap(), std::fs::read(&img).unwrap());
    assert!(s.bytes_written * 10 < 8 << 20, "wrote {} bytes of an 8 MiB image", s.bytes_written);
}

/// A directory of many small files (read ahead by the scanner, stored in shared data
/// blobs) mixed with subdirectories, a hard-linked pair, duplicates, empty files, files at
/// and just past the small-file limit and a large one: restored identically; then, with
/// only their times changed, backed up again without storing their content again.
#[test]
fn many_small_files_share_blobs_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut entries = Vec::new();
    for i in 0..300usize {
        let len = match i % 7 {
            0 => 0,
            1 => 1,
            2 => 64 << 10,
            3 => (64 << 10) + 1,
            _ => 200 + i * 37,
        };
        // Every tenth file repeats another's content.
        let seed = if i % 10 == 9 { 5 } else { (i % 250) as u8 };
        entries.push(Entry::File { len, seed, mode: 0o640 });
    }
    build(&src, &entries);
    for d in ["a", "m", "z"] {
        std::fs::create_dir(src.join(d)).unwrap();
        for i in 0..20 {
            std::fs::write(src.join(d).join(format!("n{i}")), content(100 + i * 500, i as u8)).unwrap();
        }
    }
    std::fs::write(src.join("big"), content(3 << 20, 77)).unwrap();
    std::fs::hard_link(src.join("a/n3"), src.join("linked")).unwrap();

    let repo = local_repo(&tmp.path().join("repo"));
    let (_, snap) = backup(&repo, &src);
    let out = tmp.path().join("out");
    restore_to(&repo, &snap, &out);
    assert_eq!(describe(&out), describe(&src));

    // New times, same content: the segments exist, nothing but listings is stored.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(later).unwrap();
        }
    }
    let (_, again) = backup(&repo, &src);
    assert!(again.summary.unchanged_files >= 100, "the subdirectories' files kept their times");
    assert!(
        again.summary.new_bytes < 200_000,
        "content stored again: {} new bytes of {}",
        again.summary.new_bytes,
        again.summary.bytes
    );
    let out2 = tmp.path().join("out2");
    restore_to(&repo, &again, &out2);
    assert_eq!(describe(&out2), describe(&src));
}

/// Pages of `path` in the page cache, and of how many.
fn resident_pages(path: &Path) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let page = 4096;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, unmapped before return;
    // `vec` has one byte per page of it.
    unsafe {
        let at = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(at, libc::MAP_FAILED);
        assert_eq!(libc::mincore(at, len, vec.as_mut_ptr()), 0);
        libc::munmap(at, len);
    }
    (vec.iter().filter(|b| **b & 1 == 1).count(), pages)
}

/// A large restore through the page cache (the default) gives back every byte and leaves
/// little of what it wrote in the node's page cache: each worker drops its writes once
/// written back, instead of the restore taking a page of memory per 4 KiB restored.
#[test]
fn a_large_restore_leaves_little_in_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let data = super::bytes(96 << 20, 17, false);
    std::fs::write(src.join("big"), &data).unwrap();
    let repo = local_repo(&tmp.path().join("repo"));
    let (_, snap) = backup(&repo, &src);
    let out = tmp.path().join("out");
    // Two workers: each keeps its last 16 MiB, a third of the file.
    let opts = RestoreOptions { workers: 2, ..Default::default() };
    restore::run(repo.clone(), &snap, &out, &opts, Arc::default()).unwrap();
    let restored = out.join("big");
    // Looked at before anything reads the file back. (tmpfs is all page cache.)
    // SAFETY: statfs of a valid path into a zeroed struct.
    let tmpfs = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let path = std::ffi::CString::new(restored.as_os_str().as_encoded_bytes()).unwrap();
        libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    };
    let (resident, pages) = resident_pages(&restored);
    assert!(tmpfs || resident * 2 < pages, "{resident} of {pages} pages left in the page cache");
    assert!(std::fs::read(&restored).unwrap() == data, "the restored file differs");
}

/// One directory with more small files than the restore reads recipes for at once (a
/// flat attachment store): restored identically, reading about what the repository
/// holds, not each file's whole shared blob once per file (that took 177 s for 200,000
/// files, against 20 s for them in stretches).
#[test]
fn a_directory_of_many_small_files_restores_without_rereading_shared_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..9000usize {
        let body = format!("{{\"id\":{i},\"text\":\"{}\"}}", "x".repeat(i % 700));
        std::fs::write(src.join(format!("m{i:05}.json")), body).unwrap();
    }
    std::fs::write(src.join("big"), content(2 << 20, 3)).unwrap();
    let metered = lifeline::store::Metered::new(super::local(&tmp.path().join("repo")));
    let meters = metered.meters.clone();
    let repo = super::init(Arc::new(metered));
    let (_, snap) = backup(&repo, &src);
    let files = crate::support::files_under(&tmp.path().join("repo"));
    let stored: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let before = meters.downloaded();
    let out = tmp.path().join("out");
    restore_to(&repo, &snap, &out);
    assert_eq!(describe(&out), describe(&src));
    let read = meters.downloaded() - before;
    assert!(read <= 2 * stored, "read {read} bytes for a restore of a repository of {stored}");
}
