//! Copy a restore point to another location, uploading only what it lacks, then verify
//! what was written there.
//!
//! A copy is a backup whose source is the restore point: files whose segments the
//! destination already has are recorded without reading anything; the others are
//! streamed from the source and chunked again, which gives the same chunks and segment
//! ids when both repositories share a master secret (replicas are created that way), and
//! deduplicates against the destination's previous copy of the same file.

use super::backup::{BATCH_FILE, Engine, Listing, MAX_PARKED, Prev, Progress, SmallFile, TreeOut, recover_unindexed};
use super::format::{BlobKind, ChunkRef, Id, Node, NodeKind, SegRef, Snapshot, TreeOf};
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
    let mut c = Copier {
        src: src.clone(),
        engine: Engine::start(dst.clone(), 0, progress),
        report,
        recipes: HashMap::new(),
        blobs: BlobCache::default(),
    };
    let mut root = snap.root.clone();
    let parent_root = parent.as_ref().map(|(_, s)| &s.root);
    match root.subtree {
        Some(tree) => root.subtree = Some(c.dir(&tree, parent_root.and_then(|n| n.subtree))?),
        None => {
            let old = parent_root.filter(|o| o.kind == Some(NodeKind::File)).map(|o| o.content.as_slice());
            c.file(&mut root, old.unwrap_or_default(), &snap.path, false)?;
        }
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
    /// Recipes of the files of the window of entries being copied, read together (they
    /// sit side by side in the metadata packs).
    recipes: HashMap<Id, Vec<ChunkRef>>,
    blobs: BlobCache,
}

impl Copier {
    /// Copies a directory's tree: the parent's listing is kept compact (as a backup keeps
    /// it) and the new tree is written in frames as its nodes are ready.
    fn dir(&mut self, tree: &Id, parent_tree: Option<Id>) -> Result<Id, RepoError> {
        let parent = match parent_tree {
            Some(t) => Listing::new(self.engine_repo().read_tree_as::<TreeOf<Prev>>(&t)?.nodes),
            None => Listing::default(),
        };
        let mut out = TreeOut::new(&self.engine_repo());
        let src = self.src.clone();
        // Each directory level reads its own recipes; a subdirectory must not replace them.
        let outer = std::mem::take(&mut self.recipes);
        let walked = src.for_each_tree_window(tree, |nodes: Vec<Node>| {
            let ids: Vec<Id> = nodes
                .iter()
                .filter(|n| n.kind == Some(NodeKind::File) && n.hardlink_to.is_none())
                .flat_map(|n| n.content.iter().map(|s| s.id))
                .filter(|id| !self.engine.meta_exists(id))
                .collect();
            self.recipes = self.src.read_segments(&ids)?;
            for mut node in nodes {
                let old = parent.get(&source::name_of(&node));
                match node.kind {
                    Some(NodeKind::Dir) => {
                        // What waits in the engine belongs to this directory's tree.
                        self.engine.settle(&mut out, 0)?;
                        if let Some(sub) = node.subtree {
                            node.subtree = Some(self.dir(&sub, old.and_then(|o| o.subtree))?);
                        }
                    }
                    Some(NodeKind::File) if node.hardlink_to.is_none() => {
                        let name = source::name_of(&node).to_string_lossy().into_owned();
                        let old = old.filter(|o| o.kind == Some(NodeKind::File)).map(|o| &*o.content);
                        if let Some(small) = self.file(&mut node, old.unwrap_or_default(), &name, true)? {
                            self.engine.batch_file(out.next_index(), small);
                            out.push(node, true)?;
                            self.engine.settle(&mut out, MAX_PARKED)?;
                            continue;
                        }
                    }
                    _ => {}
                }
                out.push(node, false)?;
            }
            Ok(())
        });
        self.recipes = outer;
        walked?;
        self.engine.settle(&mut out, 0)?;
        self.engine.save_tree(out)
    }

    fn engine_repo(&self) -> Arc<Repository> {
        self.engine.repo()
    }

    /// Copies a file's content; `parent` is the content of the destination's previous
    /// copy of it, to deduplicate against. A small file in a directory (`batch`) is read
    /// whole and returned, to be stored with the engine's batch of small files (as a
    /// backup stores them: one data blob for many files, not a round trip through the
    /// workers for each).
    fn file(
        &mut self,
        node: &mut Node,
        parent: &[SegRef],
        name: &str,
        batch: bool,
    ) -> Result<Option<SmallFile>, RepoError> {
        if node.content.iter().all(|s| self.engine.meta_exists(&s.id)) {
            self.report.files_reused += 1;
            return Ok(None);
        }
        self.report.files_copied += 1;
        let mut reader = ContentReader {
            repo: &self.src,
            segs: node.content.clone().into_iter(),
            recipes: &self.recipes,
            blobs: &mut self.blobs,
            buf: Vec::new(),
            pos: 0,
        };
        let wrong = |size: u64| RepoError::corrupt(name, format!("copied {size} bytes, expected {}", node.size));
        if batch && node.size > 0 && node.size <= BATCH_FILE {
            let mut data = Vec::with_capacity(node.size as usize);
            reader.read_to_end(&mut data).map_err(|e| RepoError::corrupt(name, e))?;
            if data.len() as u64 != node.size {
                return Err(wrong(data.len() as u64));
            }
            return Ok(Some(self.engine.small_file(data.into())));
        }
        let (content, size) = self.engine.content_from(&mut reader, Path::new(name), parent)?;
        if size != node.size {
            return Err(wrong(size));
        }
        node.content = content;
        Ok(None)
    }
}

/// Reads a file's content from a repository, one verified segment at a time.
struct ContentReader<'a> {
    repo: &'a Repository,
    segs: std::vec::IntoIter<SegRef>,
    recipes: &'a HashMap<Id, Vec<ChunkRef>>,
    blobs: &'a mut BlobCache,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(seg) = self.segs.next() else { return Ok(0) };
            self.buf.clear();
            self.pos = 0;
            let read;
            let recipe = match self.recipes.get(&seg.id) {
                Some(r) => r,
                None => {
                    read = self.repo.read_segment(&seg.id).map_err(std::io::Error::other)?;
                    &read
                }
            };
            for c in recipe {
                let blob = self.blobs.get(self.repo, c).map_err(std::io::Error::other)?;
                let bytes = blob.get(c.offset as usize..(c.offset + c.len) as usize).ok_or_else(|| {
                    std::io::Error::other(RepoError::corrupt(&format!("segment {:?}", seg.id), "chunk beyond its blob"))
                })?;
                self.buf.extend_from_slice(bytes);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decoded data blobs, kept while the next files may read them: the small files of a
/// directory share data blobs (thousands of files to a blob), which were decoded and
/// hashed again for every file before (200,000 small files copied in 188 s).
#[derive(Default)]
struct BlobCache {
    blobs: std::collections::VecDeque<(Id, Arc<Vec<u8>>)>,
    bytes: usize,
}

/// Decoded bytes a copy keeps.
const BLOB_CACHE_BYTES: usize = 32 << 20;

impl BlobCache {
    fn get(&mut self, repo: &Repository, c: &ChunkRef) -> Result<Arc<Vec<u8>>, RepoError> {
        if let Some((_, b)) = self.blobs.iter().rev().find(|(id, _)| *id == c.blob) {
            return Ok(b.clone());
        }
        let plain = Arc::new(repo.read_blob(BlobKind::Chunk, &c.blob, &c.loc)?);
        self.bytes += plain.len();
        self.blobs.push_back((c.blob, plain.clone()));
        while self.bytes > BLOB_CACHE_BYTES
            && self.blobs.len() > 1
            && let Some((_, old)) = self.blobs.pop_front()
        {
            self.bytes -= old.len();
        }
        Ok(plain)
    }
}
