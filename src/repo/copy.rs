//! Copy a restore point to another location, uploading only what it lacks, then verify
//! what was written there.
//!
//! A copy is a backup whose source is the restore point: files whose segments the
//! destination already has are recorded without reading anything; the others are
//! streamed from the source and chunked again, which gives the same chunks and segment
//! ids when both repositories share a master secret (replicas are created that way), and
//! deduplicates against the destination's previous copy of the same file.

use super::backup::{Engine, Progress, recover_unindexed};
use super::format::{BlobKind, Id, Node, NodeKind, SegRef, Snapshot, Tree};
use super::{RepoError, Repository, source};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub source_point: String,
    pub destination_point: String,
    /// Files recorded from segments the destination already had.
    pub files_reused: u64,
    /// Files whose content was streamed and stored.
    pub files_copied: u64,
    pub new_bytes: u64,
    pub uploaded_bytes: u64,
    /// Packs written and read back successfully at the destination.
    pub packs_verified: u64,
    /// True when the destination already had this restore point.
    pub already_present: bool,
}

/// Copies `snap` (id `id`) from `src` to `dst`.
pub fn run(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    id: &Id,
    snap: &Snapshot,
    progress: Arc<Progress>,
) -> Result<(Id, CopyReport), RepoError> {
    let mut report = CopyReport { source_point: id.hex(), ..Default::default() };
    let (lock, excluded) = super::prune::register_writer(dst, "copy")?;
    // One listing of the destination's points (each a read): whether it has this one
    // already, and else its newest of the same host and path, the parent to deduplicate
    // against (a point committed meanwhile by another writer is at worst a parent unused).
    let points = dst.points()?.good;
    if let Some((existing, _)) = points.iter().find(|(_, s)| same_point(s, snap)) {
        report.destination_point = existing.hex();
        report.already_present = true;
        return Ok((*existing, report));
    }
    let parent = points.into_iter().rev().find(|(_, s)| s.host == snap.host && s.path == snap.path);
    src.load_index_for_reading()?;
    dst.load_index(&excluded)?;
    recover_unindexed(dst, &excluded)?;
    let mut c = Copier { src: src.clone(), engine: Engine::start(dst.clone(), 0, progress), report };
    let mut root = snap.root.clone();
    let parent_root = parent.as_ref().map(|(_, s)| &s.root);
    match root.subtree {
        Some(tree) => root.subtree = Some(c.dir(&tree, parent_root.and_then(|n| n.subtree))?),
        None => c.file(&mut root, parent_root, &snap.path)?,
    }
    let stats = c.engine.finish()?;
    let mut report = c.report;
    report.new_bytes = stats.raw_bytes;
    report.uploaded_bytes = stats.stored_bytes;
    for pack in &stats.pack_ids {
        super::verify::check_written_pack(dst, pack)?;
        report.packs_verified += 1;
    }
    let copy = Snapshot { root, parent: parent.map(|(id, _)| id), ..snap.clone() };
    let new_id = super::prune::commit_point(dst, &lock, &copy)?;
    report.destination_point = new_id.hex();
    Ok((new_id, report))
}

/// The same restore point: same time, host, path and root.
fn same_point(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time && a.host == b.host && a.path == b.path && a.root.size == b.root.size
}

struct Copier {
    src: Arc<Repository>,
    engine: Engine,
    report: CopyReport,
}

impl Copier {
    fn dir(&mut self, tree: &Id, parent_tree: Option<Id>) -> Result<Id, RepoError> {
        let parent: HashMap<std::ffi::OsString, Node> = match parent_tree {
            Some(t) => self.engine_repo().read_tree(&t)?.nodes.into_iter().map(|n| (source::name_of(&n), n)).collect(),
            None => HashMap::new(),
        };
        let mut out = Tree::default();
        for mut node in self.src.read_tree(tree)?.nodes {
            let old = parent.get(&source::name_of(&node));
            match node.kind {
                Some(NodeKind::Dir) => {
                    if let Some(sub) = node.subtree {
                        node.subtree = Some(self.dir(&sub, old.and_then(|o| o.subtree))?);
                    }
                }
                Some(NodeKind::File) if node.hardlink_to.is_none() => {
                    let name = source::name_of(&node).to_string_lossy().into_owned();
                    self.file(&mut node, old, &name)?;
                }
                _ => {}
            }
            out.nodes.push(node);
        }
        let json = serde_json::to_vec(&out).map_err(RepoError::encode)?;
        let id = self.engine_repo().chunker().id(&json);
        self.engine.save_meta(BlobKind::Tree, id, &json)?;
        Ok(id)
    }

    fn engine_repo(&self) -> Arc<Repository> {
        self.engine.repo()
    }

    fn file(&mut self, node: &mut Node, old: Option<&Node>, name: &str) -> Result<(), RepoError> {
        if node.content.iter().all(|s| self.engine.meta_exists(&s.id)) {
            self.report.files_reused += 1;
            return Ok(());
        }
        self.report.files_copied += 1;
        let parent: &[SegRef] =
            old.filter(|o| o.kind == Some(NodeKind::File)).map(|o| o.content.as_slice()).unwrap_or_default();
        let mut reader =
            ContentReader { repo: self.src.clone(), segs: node.content.clone().into_iter(), buf: Vec::new(), pos: 0 };
        let (content, size) = self.engine.content_from(&mut reader, Path::new(name), parent)?;
        if size != node.size {
            return Err(RepoError::corrupt(name, format!("copied {size} bytes, expected {}", node.size)));
        }
        node.content = content;
        Ok(())
    }
}

/// Reads a file's content from a repository, one verified segment at a time.
struct ContentReader {
    repo: Arc<Repository>,
    segs: std::vec::IntoIter<SegRef>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ContentReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(seg) = self.segs.next() else { return Ok(0) };
            self.buf.clear();
            self.pos = 0;
            let buf = &mut self.buf;
            super::restore::for_each_chunk(&self.repo, &seg.id, &mut |plain| {
                buf.extend_from_slice(plain);
                Ok(())
            })
            .map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
