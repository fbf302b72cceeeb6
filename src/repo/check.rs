//! Checking what a restore wrote against the restore point's record, by reading it back.
//!
//! The restore point's trees are the record: every file's path, kind, size and the ids of
//! its chunks (keyed BLAKE3 of their plaintext). The check walks them and the target
//! together and, for each regular file (or the block image), re-reads the written bytes
//! in the recorded chunk ranges and hashes them. It counts files and bytes, names what is
//! missing, different or unexpected, and computes a **volume digest** twice: from the
//! record and from the target. They are equal exactly when every checked file holds the
//! recorded content.
//!
//! The digest is BLAKE3 over each file's path, size and chunk ids, in the record's order
//! (depth first, each directory's entries in name-byte order). It
//! depends on the repository's chunk-id key, so it compares a restore with its point, not
//! volumes across repositories.

use super::format::{ChunkRef, Id, Node, NodeKind, Snapshot, SourceKind};
use super::{RepoError, Repository, source};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How many differences a report names (the counts cover all of them).
const NAMED: usize = 20;

/// What the check found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Regular files (or the block image) the record holds, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Those found in the target with the recorded content, and their bytes.
    pub files_matching: u64,
    pub bytes_matching: u64,
    /// The volume digest from the record, and from what the target holds.
    pub digest: String,
    pub found_digest: String,
    pub missing: u64,
    pub differing: u64,
    /// Entries in the target the record does not have (only checked for a whole restore).
    pub unexpected: u64,
    /// The first differences, one line each (`path: what`).
    pub differences: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.differing == 0 && self.unexpected == 0 && self.digest == self.found_digest
    }

    /// One line naming the difference, for an error and a condition.
    pub fn summary(&self) -> String {
        if self.ok() {
            return format!("{} files, {} bytes as recorded (digest {})", self.files, self.bytes, &self.digest[..16]);
        }
        let mut parts = vec![format!(
            "{} of {} files and {} of {} bytes as recorded",
            self.files_matching, self.files, self.bytes_matching, self.bytes
        )];
        for (n, what) in [(self.missing, "missing"), (self.differing, "different"), (self.unexpected, "unexpected")] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let mut s = parts.join(", ");
        if !self.differences.is_empty() {
            s.push_str(&format!(" ({})", self.differences.iter().take(3).cloned().collect::<Vec<_>>().join("; ")));
        }
        s
    }
}

/// One regular file to read back.
struct FileCheck {
    rel: String,
    path: PathBuf,
    size: u64,
    segments: Vec<Id>,
}

/// How a file compares with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Same,
    Missing,
    Different,
}

/// Per file: (expected digest, found digest, how it compares, the difference in words).
type FileResult = (blake3::Hash, blake3::Hash, Found, Option<String>);

/// Files read back together: their recipes are fetched with few reads (they sit side by
/// side in the metadata packs), then [`CHECK_THREADS`] threads read the files. A check
/// holds one batch and one directory window of the record at a time, whatever the count
/// of files (200,000 files in one directory: 31 s and 159 MiB when every file was
/// gathered first and its recipe fetched alone).
const CHECK_BATCH: usize = 2048;
const CHECK_THREADS: usize = 4;

/// Checks `target` against `snap`. `include` limits the check to those paths, as for a
/// restore; unexpected entries are looked for only when it is empty.
pub fn run(repo: &Repository, snap: &Snapshot, target: &Path, include: &[String]) -> Result<CheckReport, RepoError> {
    repo.load_index_for_reading()?;
    let mut c = Checker {
        repo,
        include: include.iter().map(|i| i.trim_matches('/').to_string()).collect(),
        report: CheckReport::default(),
        expected: blake3::Hasher::new(),
        found: blake3::Hasher::new(),
        batch: Vec::new(),
    };
    match snap.source {
        SourceKind::Block => c.push(FileCheck {
            rel: String::new(),
            path: target.to_path_buf(),
            size: snap.root.size,
            segments: snap.root.content.iter().map(|s| s.id).collect(),
        })?,
        SourceKind::Filesystem => {
            let tree =
                snap.root.subtree.ok_or_else(|| RepoError::corrupt("restore point", "directory without a tree"))?;
            c.walk(&tree, target, "")?;
        }
    }
    c.flush()?;
    c.report.digest = c.expected.finalize().to_hex().to_string();
    c.report.found_digest = c.found.finalize().to_hex().to_string();
    Ok(c.report)
}

struct Checker<'a> {
    repo: &'a Repository,
    include: Vec<String>,
    report: CheckReport,
    /// The volume digest from the record, and from the target.
    expected: blake3::Hasher,
    found: blake3::Hasher,
    /// Files waiting to be read back, in the record's order.
    batch: Vec<FileCheck>,
}

impl Checker<'_> {
    fn push(&mut self, f: FileCheck) -> Result<(), RepoError> {
        self.batch.push(f);
        if self.batch.len() >= CHECK_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Reads the batch back in parallel, then adds it to the report and the digests in
    /// the record's order.
    fn flush(&mut self) -> Result<(), RepoError> {
        let files = std::mem::take(&mut self.batch);
        if files.is_empty() {
            return Ok(());
        }
        let ids: Vec<Id> = files.iter().flat_map(|f| f.segments.iter().copied()).collect();
        let recipes = self.repo.read_segments(&ids)?;
        drop(ids);
        let next = AtomicUsize::new(0);
        let repo = self.repo;
        let read: Vec<Result<Vec<(usize, FileResult)>, RepoError>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..CHECK_THREADS.min(files.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Relaxed);
                            let Some(f) = files.get(i) else { break };
                            out.push((i, check_file(repo, f, &recipes)?));
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a check thread panicked")).collect()
        });
        let mut results: Vec<Option<FileResult>> = vec![None; files.len()];
        for part in read {
            for (i, r) in part? {
                results[i] = Some(r);
            }
        }
        for (f, r) in files.iter().zip(results) {
            let (want, got, how, diff) = r.expect("every file of a batch is read back");
            self.report.files += 1;
            self.report.bytes += f.size;
            self.expected.update(want.as_bytes());
            self.found.update(got.as_bytes());
            match how {
                Found::Same => {
                    self.report.files_matching += 1;
                    self.report.bytes_matching += f.size;
                }
                Found::Missing => self.report.missing += 1,
                Found::Different => self.report.differing += 1,
            }
            if let Some(d) = diff {
                note(&mut self.report, d);
            }
        }
        Ok(())
    }

    /// Walks a directory's record and the target together; with no `include`, then
    /// names what the target's directory holds that the record does not.
    fn walk(&mut self, tree: &Id, dir: &Path, rel: &str) -> Result<(), RepoError> {
        let whole = self.include.is_empty();
        let mut names: HashSet<OsString> = HashSet::new();
        let repo = self.repo;
        repo.for_each_tree_window(tree, |nodes: Vec<Node>| {
            for node in nodes {
                let name = source::name_of(&node);
                self.node(node, &name, dir, rel)?;
                if whole {
                    names.insert(name);
                }
            }
            Ok(())
        })?;
        if whole {
            self.unexpected(dir, rel, &names)?;
        }
        Ok(())
    }

    fn node(&mut self, node: Node, name: &OsStr, dir: &Path, rel: &str) -> Result<(), RepoError> {
        let child = super::backup::join_rel(rel, &name.to_string_lossy());
        let include = &self.include;
        let inside = include.is_empty() || include.iter().any(|i| child == *i || child.starts_with(&format!("{i}/")));
        let leads = include.iter().any(|i| i.starts_with(&format!("{child}/")));
        if !inside && !leads {
            return Ok(());
        }
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path);
        let report = &mut self.report;
        match node.kind {
            Some(NodeKind::Dir) => match meta {
                Ok(m) if m.is_dir() => {
                    if let Some(sub) = node.subtree {
                        self.walk(&sub, &path, &child)?;
                    }
                }
                _ if !inside => {}
                Ok(_) => {
                    report.differing += 1;
                    note(report, format!("{child}: not a directory"));
                }
                Err(_) => {
                    report.missing += 1;
                    note(report, format!("{child}/: missing"));
                }
            },
            _ if !inside => {}
            // A hard link's content is checked at the path it links to.
            Some(NodeKind::File) if node.hardlink_to.is_some() && meta.is_err() => {
                report.missing += 1;
                note(report, format!("{child}: hard link missing"));
            }
            Some(NodeKind::File) if node.hardlink_to.is_some() => {}
            Some(NodeKind::File) => {
                let segments = node.content.iter().map(|s| s.id).collect();
                self.push(FileCheck { rel: child, path, size: node.size, segments })?;
            }
            Some(NodeKind::Symlink) => {
                let want = source::link_target_of(&node);
                match std::fs::read_link(&path) {
                    Ok(t) if t.as_os_str() == want => {}
                    Ok(t) => {
                        report.differing += 1;
                        note(report, format!("{child}: link to {} instead of {}", t.display(), want.to_string_lossy()));
                    }
                    Err(_) => {
                        report.missing += 1;
                        note(report, format!("{child}: symlink missing"));
                    }
                }
            }
            // Devices, fifos and sockets: their presence is the restore's business (it
            // may not be allowed to create them); there is no content to check.
            _ => {}
        }
        Ok(())
    }

    /// Entries of the target's `dir` the record does not have. A fresh filesystem's
    /// `lost+found` is not the restore's.
    fn unexpected(&mut self, dir: &Path, rel: &str, names: &HashSet<OsString>) -> Result<(), RepoError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Already named as missing or not a directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RepoError::io("list", dir, e)),
        };
        for e in entries {
            let name = e.map_err(|e| RepoError::io("list", dir, e))?.file_name();
            if names.contains(&name) || (rel.is_empty() && name == LOST_FOUND) {
                continue;
            }
            self.report.unexpected += 1;
            let child = super::backup::join_rel(rel, &name.to_string_lossy());
            note(&mut self.report, format!("{child}: not in the restore point"));
        }
        Ok(())
    }
}

fn note(report: &mut CheckReport, line: String) {
    if report.differences.len() < NAMED {
        report.differences.push(line);
    }
}

fn shown(rel: &str) -> &str {
    if rel.is_empty() { "the image" } else { rel }
}

/// Re-reads one file in its recorded chunk ranges.
fn check_file(repo: &Repository, f: &FileCheck, recipes: &HashMap<Id, Vec<ChunkRef>>) -> Result<FileResult, RepoError> {
    let chunks: Vec<&ChunkRef> = f.segments.iter().flat_map(|s| recipes.get(s).into_iter().flatten()).collect();
    let mut want = blake3::Hasher::new();
    want.update(f.rel.as_bytes()).update(&[0]).update(&f.size.to_le_bytes());
    for c in &chunks {
        want.update(&c.id.0);
    }
    let want = want.finalize();
    let mut got = blake3::Hasher::new();
    got.update(f.rel.as_bytes()).update(&[0]);
    let file = match File::open(&f.path) {
        Ok(file) => file,
        Err(_) => {
            got.update(b"missing");
            return Ok((want, got.finalize(), Found::Missing, Some(format!("{}: missing", shown(&f.rel)))));
        }
    };
    let size = if f.rel.is_empty() {
        // A block image may be a device or a file larger than the image.
        f.size
    } else {
        file.metadata().map_err(|e| RepoError::io("read", &f.path, e))?.len()
    };
    got.update(&size.to_le_bytes());
    let mut diff = (size != f.size).then(|| format!("{}: {size} bytes instead of {}", shown(&f.rel), f.size));
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for c in &chunks {
        buf.resize(c.len as usize, 0);
        let id = match file.read_exact_at(&mut buf, offset) {
            Ok(()) => repo.chunker().id(&buf),
            Err(_) => Id([0; 32]),
        };
        got.update(&id.0);
        if id != c.id && diff.is_none() {
            let end = offset + u64::from(c.len);
            diff = Some(format!("{}: content differs in bytes {offset}..{end}", shown(&f.rel)));
        }
        offset += u64::from(c.len);
    }
    let got = got.finalize();
    let how = if diff.is_none() && got == want { Found::Same } else { Found::Different };
    Ok((want, got, how, diff))
}

/// The directory `mkfs.ext4` creates at the root of every new filesystem.
pub const LOST_FOUND: &str = "lost+found";
