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
//! The digest is BLAKE3 over each file's path, size and chunk ids, in path order. It
//! depends on the repository's chunk-id key, so it compares a restore with its point, not
//! volumes across repositories.

use super::format::{ChunkRef, Id, NodeKind, Snapshot, SourceKind};
use super::{RepoError, Repository, source};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Checks `target` against `snap`. `include` limits the check to those paths, as for a
/// restore; unexpected entries are looked for only when it is empty.
pub fn run(repo: &Repository, snap: &Snapshot, target: &Path, include: &[String]) -> Result<CheckReport, RepoError> {
    repo.load_index_for_reading()?;
    let mut report = CheckReport::default();
    let mut files: Vec<FileCheck> = Vec::new();
    let mut expected_paths: BTreeSet<String> = BTreeSet::new();
    match snap.source {
        SourceKind::Block => files.push(FileCheck {
            rel: String::new(),
            path: target.to_path_buf(),
            size: snap.root.size,
            segments: snap.root.content.iter().map(|s| s.id).collect(),
        }),
        SourceKind::Filesystem => {
            let tree =
                snap.root.subtree.ok_or_else(|| RepoError::corrupt("restore point", "directory without a tree"))?;
            let includes: Vec<String> = include.iter().map(|i| i.trim_matches('/').to_string()).collect();
            walk(repo, &tree, target, "", &includes, &mut files, &mut expected_paths, &mut report)?;
        }
    }
    // Read back in parallel; the digest combines the files in path order.
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let results: Mutex<BTreeMap<usize, FileResult>> = Mutex::new(BTreeMap::new());
    let next = Mutex::new(0usize);
    let failure: Mutex<Option<RepoError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(f) = files.get(i) else { break };
                    match check_file(repo, f) {
                        Ok(r) => {
                            results.lock().unwrap_or_else(|e| e.into_inner()).insert(i, r);
                        }
                        Err(e) => {
                            failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut expected = blake3::Hasher::new();
    let mut found = blake3::Hasher::new();
    for (i, (want, got, how, diff)) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let f = &files[i];
        report.files += 1;
        report.bytes += f.size;
        expected.update(want.as_bytes());
        found.update(got.as_bytes());
        match how {
            Found::Same => {
                report.files_matching += 1;
                report.bytes_matching += f.size;
            }
            Found::Missing => report.missing += 1,
            Found::Different => report.differing += 1,
        }
        if let Some(d) = diff {
            note(&mut report, d);
        }
    }
    report.digest = expected.finalize().to_hex().to_string();
    report.found_digest = found.finalize().to_hex().to_string();
    if include.is_empty() && snap.source == SourceKind::Filesystem {
        unexpected(target, "", &expected_paths, &mut report)?;
    }
    Ok(report)
}

fn note(report: &mut CheckReport, line: String) {
    if report.differences.len() < NAMED {
        report.differences.push(line);
    }
}

fn shown(rel: &str) -> &str {
    if rel.is_empty() { "the image" } else { rel }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    repo: &Repository,
    tree: &Id,
    dir: &Path,
    rel: &str,
    include: &[String],
    files: &mut Vec<FileCheck>,
    seen: &mut BTreeSet<String>,
    report: &mut CheckReport,
) -> Result<(), RepoError> {
    for node in repo.read_tree(tree)?.nodes {
        let name = source::name_of(&node);
        let child = super::backup::join_rel(rel, &name.to_string_lossy());
        let inside = include.is_empty() || include.iter().any(|i| child == *i || child.starts_with(&format!("{i}/")));
        let leads = include.iter().any(|i| i.starts_with(&format!("{child}/")));
        if !inside && !leads {
            continue;
        }
        seen.insert(child.clone());
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path);
        match node.kind {
            Some(NodeKind::Dir) => match meta {
                Ok(m) if m.is_dir() => {
                    if let Some(sub) = node.subtree {
                        walk(repo, &sub, &path, &child, include, files, seen, report)?;
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
                files.push(FileCheck {
                    rel: child,
                    path,
                    size: node.size,
                    segments: node.content.iter().map(|s| s.id).collect(),
                });
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
    }
    Ok(())
}

/// Re-reads one file in its recorded chunk ranges.
fn check_file(repo: &Repository, f: &FileCheck) -> Result<FileResult, RepoError> {
    let recipes = repo.read_segments(&f.segments)?;
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

/// Entries under `dir` the record does not have. A fresh filesystem's `lost+found` is
/// not the restore's.
fn unexpected(dir: &Path, rel: &str, expected: &BTreeSet<String>, report: &mut CheckReport) -> Result<(), RepoError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RepoError::io("list", dir, e))?;
    for e in entries {
        let e = e.map_err(|e| RepoError::io("list", dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        let child = super::backup::join_rel(rel, &name);
        if rel.is_empty() && name == LOST_FOUND && !expected.contains(&child) {
            continue;
        }
        if !expected.contains(&child) {
            report.unexpected += 1;
            note(report, format!("{child}: not in the restore point"));
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            unexpected(&e.path(), &child, expected, report)?;
        }
    }
    Ok(())
}

/// The directory `mkfs.ext4` creates at the root of every new filesystem.
pub const LOST_FOUND: &str = "lost+found";
