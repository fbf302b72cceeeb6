//! Writing blobs: compress, encrypt, gather into packs, upload packs in the background,
//! and index them once uploaded.

use super::buffers::Pool;
use super::format::{self, BlobEntry, BlobKind, BlobLoc, Compression, Id};
use super::{AAD_PACK_HEADER, RepoError, Repository, blob_aad};
use crate::store::StoreError;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A finished pack on its way to storage: id, bytes, what it holds, and the packs its
/// segments point into (it is indexed only once those are stored).
type Finished = (Id, Bytes, Vec<BlobEntry>, HashSet<Id>);

/// A pack being filled.
pub struct PackWriter {
    id: Id,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    deps: HashSet<Id>,
    /// Where the buffer returns once the pack is uploaded (data packs).
    pool: Option<Arc<Pool>>,
}

impl PackWriter {
    fn new(pool: Option<Arc<Pool>>) -> Self {
        let buf = match &pool {
            Some(p) => p.take(),
            None => Vec::with_capacity(1 << 20),
        };
        Self { id: Id::random(), buf, entries: Vec::new(), deps: HashSet::new(), pool }
    }

    /// Bytes in the pack so far.
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn add(&mut self, kind: BlobKind, id: Id, raw_len: u32, compression: Compression, sealed: &[u8]) -> BlobLoc {
        self.add_with(kind, id, raw_len, compression, |buf| buf.extend_from_slice(sealed))
    }

    /// Adds a blob that `write` appends to the pack's buffer.
    fn add_with(
        &mut self,
        kind: BlobKind,
        id: Id,
        raw_len: u32,
        compression: Compression,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> BlobLoc {
        let at = self.buf.len();
        let offset = self.len();
        write(&mut self.buf);
        let loc = BlobLoc {
            pack: self.id,
            offset: offset as u32,
            stored_len: (self.buf.len() - at) as u32,
            raw_len,
            compression,
        };
        self.entries.push(BlobEntry { kind, id, loc });
        loc
    }

    /// The finished pack file: blobs, sealed header, header length (u32 LE).
    fn finish(mut self, repo: &Repository) -> Finished {
        let header = repo.cipher().seal(&format::encode_pack_header(&self.entries), AAD_PACK_HEADER);
        self.buf.reserve_exact(header.len() + 4);
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
        let bytes = match &self.pool {
            Some(p) => p.freeze(self.buf),
            None => Bytes::from(self.buf),
        };
        (self.id, bytes, self.entries, self.deps)
    }
}

/// Blobs up to this size are gathered into one buffer to be compressed.
const GATHER_MAX: usize = 4 << 20;
/// Parts after the first at least this long are compressed as frames of their own.
const FRAME_MIN: usize = 64 << 10;
/// A metadata pack goes along with every this many data packs, or with the next one once
/// it holds [`META_WITH_DATA`] bytes.
const META_EVERY: usize = 4;
const META_WITH_DATA: usize = 128 << 10;
/// Blobs shorter than this are stored uncompressed.
const TINY_BLOB: usize = 256;

thread_local! {
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A blob's parts gathered into one buffer (see [`compress_parts`]).
    static GATHERED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Compresses the concatenation of `parts` into `out` at `level`, without concatenating
/// them first; false when the data does not shrink by 1/32.
///
/// The output is one zstd frame, or one frame per part when every part after the first is
/// at least [`FRAME_MIN`] long (a data blob's small header, then its chunks as one or two
/// slices of their read blocks). A zstd decoder outputs the concatenation of consecutive
/// frames (RFC 8878, section 3.1), so readers see the same plaintext either way; the
/// frames cost a few bytes each and save copying the blob into one buffer.
///
/// Levels 1 and 2 use a minimum match of 5 bytes (their default is 6), as level 3 does:
/// on PostgreSQL WAL this stores 20 % less at the same speed, and on the whole benchmark
/// dataset level 1 with it is as small as level 3 at 0.7 s less CPU per 2.6 GB (FORMAT.md).
pub fn compress_parts(parts: &[&[u8]], level: i32, out: &mut Vec<u8>) -> bool {
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective, zstd_sys::ZSTD_EndDirective};
    if parts.len() > 1 && parts[1..].iter().all(|p| p.len() >= FRAME_MIN) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        out.clear();
        out.reserve(parts.iter().map(|p| zstd::zstd_safe::compress_bound(p.len())).sum());
        return with_cctx(level, |cctx| {
            for p in parts {
                cctx.reset(ResetDirective::SessionOnly).ok()?;
                // Appended after the frames before it (the room is reserved above).
                let at = out.len();
                let mut frame = std::io::Cursor::new(&mut *out);
                frame.set_position(at as u64);
                cctx.compress2(&mut frame, p).ok()?;
            }
            Some(out.len() + total / 32 < total)
        })
        .unwrap_or(false);
    }
    // Otherwise parts are gathered into one buffer and compressed in one call: zstd's
    // streaming mode copies its input into a window buffer anyway, and then matches across
    // that buffer's wrap with its slower external-dictionary code (a quarter of a backup's
    // compression time). One copy here instead, and the one-shot fast path.
    if parts.len() > 1 && parts.iter().map(|p| p.len()).sum::<usize>() <= GATHER_MAX {
        return GATHERED.with_borrow_mut(|all| {
            all.clear();
            for p in parts {
                all.extend_from_slice(p);
            }
            let done = compress_parts(&[all.as_slice()], level, out);
            if all.capacity() > GATHER_MAX {
                *all = Vec::new();
            }
            done
        });
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(total) + 1024);
    with_cctx(level, |cctx| {
        cctx.reset(ResetDirective::SessionOnly).ok()?;
        if let [one] = parts {
            // One call, straight from the input (the output has the worst case's room).
            cctx.compress2(out, one).ok()?;
            return Some(out.len() + total / 32 < total);
        }
        cctx.set_pledged_src_size(Some(total as u64)).ok()?;
        let mut output = OutBuffer::around(out);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let mut input = InBuffer::around(part);
            let end = if i == last { ZSTD_EndDirective::ZSTD_e_end } else { ZSTD_EndDirective::ZSTD_e_continue };
            loop {
                let remaining = cctx.compress_stream2(&mut output, &mut input, end).ok()?;
                let done = if i == last { remaining == 0 } else { input.pos() == part.len() };
                if done {
                    break;
                }
                // The output is sized for the worst case; running out means no gain.
                if output.pos() >= output.capacity() {
                    return None;
                }
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(out.len() + total / 32 < total)
    })
    .unwrap_or(false)
}

thread_local! {
    /// Whether the last blob this thread tried to compress did not shrink.
    static LAST_INCOMPRESSIBLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Blobs at least this large, after one that did not shrink, are first sampled.
const SAMPLE_MIN: usize = 256 << 10;
/// Bytes of each of the three samples.
const SAMPLE: usize = 16 << 10;

/// Whether compressing a blob is worth trying. After a blob that did not shrink (the same
/// file's next blob, most likely: media, encrypted or compressed files), three samples
/// of a large blob (its start, middle and end) are compressed first, and the whole blob
/// only when they shrink by 1/32 as a blob must. Trying an incompressible blob costs three
/// copies of it (the parts gathered, zstd's raw blocks, then the sealed copy) besides
/// zstd's own time: a sixth of the CPU of a backup of random data. A blob after one that
/// shrank is always tried, so compressible data pays nothing for this.
fn worth_trying(parts: &[&[u8]], level: i32) -> bool {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if !LAST_INCOMPRESSIBLE.get() || total < SAMPLE_MIN {
        return true;
    }
    let mut sample = Vec::with_capacity(3 * SAMPLE);
    for start in [0, total / 2 - SAMPLE / 2, total - SAMPLE] {
        extend_from(parts, start, SAMPLE, &mut sample);
    }
    let mut out = Vec::new();
    compress_parts(&[sample.as_slice()], level, &mut out)
}

/// [`compress_parts`] where [`worth_trying`], remembering whether the blob shrank.
fn try_compress(parts: &[&[u8]], level: i32, out: &mut Vec<u8>) -> bool {
    if !worth_trying(parts, level) {
        return false;
    }
    let shrank = compress_parts(parts, level, out);
    LAST_INCOMPRESSIBLE.set(!shrank);
    shrank
}

/// Appends `len` bytes of the concatenation of `parts`, from `start` on, to `out`.
fn extend_from(parts: &[&[u8]], mut start: usize, mut len: usize, out: &mut Vec<u8>) {
    for p in parts {
        if len == 0 {
            break;
        }
        if start >= p.len() {
            start -= p.len();
            continue;
        }
        let take = (p.len() - start).min(len);
        out.extend_from_slice(&p[start..start + take]);
        start = 0;
        len -= take;
    }
}

/// Runs `f` with the thread's compression context, set up for `level`.
fn with_cctx<R>(level: i32, f: impl FnOnce(&mut zstd::zstd_safe::CCtx<'static>) -> Option<R>) -> Option<R> {
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level).ok()?;
            if level == 1 || level == 2 {
                c.set_parameter(zstd::zstd_safe::CParameter::MinMatch(5)).ok()?;
            }
            *cell = Some((level, c));
        }
        let (_, c) = cell.as_mut()?;
        f(c.context_mut())
    })
}

/// Figures of what a saver wrote.
#[derive(Debug, Default, Clone)]
pub struct SaveStats {
    pub blobs: u64,
    /// Packs uploaded.
    pub pack_ids: Vec<Id>,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

struct Shared {
    /// Uploaded packs not yet indexed, with their dependencies.
    done: Vec<(Id, Vec<BlobEntry>, HashSet<Id>)>,
    /// Every pack this saver uploaded.
    uploaded: HashSet<Id>,
    error: Option<StoreError>,
    stats: SaveStats,
}

/// Saves blobs into packs; thread-safe. Data chunks and metadata (segments, trees) go
/// to separate packs, so restores and listings read small metadata packs.
pub struct Saver {
    repo: Arc<Repository>,
    data: Mutex<Option<PackWriter>>,
    meta: Mutex<Option<PackWriter>>,
    queue: Mutex<Option<SyncSender<Finished>>>,
    uploaders: Mutex<Vec<JoinHandle<()>>>,
    shared: Arc<Mutex<Shared>>,
    /// Buffers of data packs, reused once uploaded.
    packs: Arc<Pool>,
    /// Data packs sent since the last metadata pack.
    data_packs_since_meta: AtomicUsize,
    /// Index what is uploaded every this many packs, so an interrupted run leaves
    /// indexed, reusable data.
    index_every: usize,
}

impl Saver {
    /// `uploads` packs are uploaded concurrently; the next one waits until an upload
    /// slot is free, which bounds memory to about (uploads + 2) packs.
    pub fn new(repo: Arc<Repository>, uploads: usize) -> Arc<Self> {
        let (tx, rx) = sync_channel::<Finished>(0);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Mutex::new(Shared {
            done: Vec::new(),
            uploaded: HashSet::new(),
            error: None,
            stats: SaveStats::default(),
        }));
        let repo_pack_size = repo.config().pack_size as usize;
        let uploaders = (0..uploads.max(1))
            .map(|i| {
                let (repo, rx, shared) = (repo.clone(), rx.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("lifeline-upload-{i}"))
                    .spawn(move || upload_loop(&repo, &rx, &shared))
                    .expect("failed to spawn an upload thread")
            })
            .collect();
        Arc::new(Self {
            repo,
            data: Mutex::new(None),
            meta: Mutex::new(None),
            queue: Mutex::new(Some(tx)),
            uploaders: Mutex::new(uploaders),
            shared,
            // Room for the target and the pack header: a pack is closed before a blob would
            // take it past the target, so a buffer grows only for a blob larger than that.
            packs: Pool::new(repo_pack_size + (64 << 10), uploads + 2),
            index_every: 32,
            data_packs_since_meta: AtomicUsize::new(0),
        })
    }

    /// The first upload failure, if any: later saves fail fast with it.
    fn check(&self) -> Result<(), RepoError> {
        match &self.shared.lock().unwrap_or_else(|e| e.into_inner()).error {
            Some(e) => Err(RepoError::Store(e.clone())),
            None => Ok(()),
        }
    }

    /// Compresses (when it pays), encrypts and packs a blob; returns where it will be.
    pub fn save(&self, kind: BlobKind, id: Id, plain: &[u8]) -> Result<BlobLoc, RepoError> {
        self.save_with_deps(kind, id, plain, std::iter::empty())
    }

    /// Like [`Saver::save`], for a blob that points into other packs (a segment): its pack
    /// is indexed only after those packs are stored, so an index never lists a segment
    /// whose data is missing.
    pub fn save_with_deps(
        &self,
        kind: BlobKind,
        id: Id,
        plain: &[u8],
        deps: impl IntoIterator<Item = Id>,
    ) -> Result<BlobLoc, RepoError> {
        self.check()?;
        self.pack_blob(kind, id, &[plain], deps)
    }

    /// [`Saver::save`] of a blob given as consecutive parts (a data blob's header and its
    /// chunks), which are never copied into one plaintext buffer.
    pub fn save_parts(&self, kind: BlobKind, id: Id, parts: &[&[u8]]) -> Result<BlobLoc, RepoError> {
        self.check()?;
        self.pack_blob(kind, id, parts, std::iter::empty())
    }

    /// [`Saver::save`] of a blob its caller already compressed: `frames` are
    /// zstd frames whose concatenation decompresses to the blob's `raw_len` bytes (a
    /// large directory's tree, compressed as it is written so that its plaintext is
    /// never whole in memory).
    pub fn save_compressed(&self, kind: BlobKind, id: Id, raw_len: u64, frames: &[u8]) -> Result<BlobLoc, RepoError> {
        self.check()?;
        let raw_len =
            u32::try_from(raw_len).map_err(|_| RepoError::Invalid(format!("blob {id:?} is larger than 4 GiB")))?;
        self.seal_blob(kind, id, raw_len, &[frames], Compression::Zstd, std::iter::empty())
    }

    /// Compresses the blob (given as parts) and seals it straight into the open pack:
    /// the only copies are the compressed output and the sealed bytes in the pack.
    fn pack_blob(
        &self,
        kind: BlobKind,
        id: Id,
        parts: &[&[u8]],
        deps: impl IntoIterator<Item = Id>,
    ) -> Result<BlobLoc, RepoError> {
        let raw_len: usize = parts.iter().map(|p| p.len()).sum();
        // The thread's compression buffer, lent out for this blob.
        let mut compressed = COMPRESSED.with_borrow_mut(std::mem::take);
        // A tiny blob (a small file's segment recipe: ids, which are random) does not
        // shrink; trying cost a tenth of a many-small-files backup's walking thread.
        let zstd = raw_len >= TINY_BLOB && try_compress(parts, self.repo.config().zstd_level, &mut compressed);
        let one = [compressed.as_slice()];
        let (body, compression): (&[&[u8]], _) =
            if zstd { (&one, Compression::Zstd) } else { (parts, Compression::None) };
        let loc = self.seal_blob(kind, id, raw_len as u32, body, compression, deps);
        // Kept for the thread's next blob, unless a rare huge blob grew it.
        if compressed.capacity() <= 4 << 20 {
            COMPRESSED.with_borrow_mut(|c| *c = compressed);
        }
        loc
    }

    /// Seals a blob's stored body (compressed or not) into the open pack, and sends the
    /// packs it fills.
    fn seal_blob(
        &self,
        kind: BlobKind,
        id: Id,
        raw_len: u32,
        body: &[&[u8]],
        compression: Compression,
        deps: impl IntoIterator<Item = Id>,
    ) -> Result<BlobLoc, RepoError> {
        let body_len: usize = body.iter().map(|p| p.len()).sum();
        let aad = blob_aad(kind, &id);
        let target = self.repo.config().pack_size as usize;
        let slot = if kind == BlobKind::Chunk { &self.data } else { &self.meta };
        let mut full = Vec::new();
        let loc = {
            let mut w = slot.lock().unwrap_or_else(|e| e.into_inner());
            // A blob that would take the pack past its target starts a new one, so a pack
            // buffer holds about the target, not the target plus a whole blob.
            let need = body_len + super::crypto::OVERHEAD;
            if w.as_ref().is_some_and(|p| !p.entries.is_empty() && p.len() + need > target) {
                full.extend(w.take());
            }
            let pool = (kind == BlobKind::Chunk).then(|| self.packs.clone());
            let writer = w.get_or_insert_with(|| PackWriter::new(pool));
            let cipher = self.repo.cipher();
            let loc = writer.add_with(kind, id, raw_len, compression, |buf| cipher.seal_parts_into(body, &aad, buf));
            writer.deps.extend(deps);
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.stats.blobs += 1;
            s.stats.raw_bytes += raw_len as u64;
            drop(s);
            if writer.len() >= target {
                full.extend(w.take());
            }
            loc
        };
        for pack in full {
            self.send(pack)?;
            // Send the recipes with their data, so an interrupted run leaves segments the
            // next run can reuse: with every few data packs, or sooner once they fill a
            // pack worth a write of its own. A metadata pack with every data pack cost a
            // request (and locally a file sync) per 8 MiB for a few kilobytes of recipes.
            if kind == BlobKind::Chunk {
                let due = self.data_packs_since_meta.fetch_add(1, Relaxed) + 1 >= META_EVERY;
                let mut slot = self.meta.lock().unwrap_or_else(|e| e.into_inner());
                let meta = slot.take_if(|m| due || m.len() >= META_WITH_DATA);
                drop(slot);
                if meta.is_some() {
                    self.data_packs_since_meta.store(0, Relaxed);
                }
                if let Some(m) = meta.filter(|m| !m.entries.is_empty()) {
                    self.send(m)?;
                }
            }
        }
        Ok(loc)
    }

    /// Packs a blob that is already compressed and sealed (moving it between packs:
    /// its encryption is bound to its kind and id, not to its place).
    pub fn save_sealed(&self, e: &BlobEntry, sealed: &[u8]) -> Result<BlobLoc, RepoError> {
        self.check()?;
        let target = self.repo.config().pack_size as usize;
        let slot = if e.kind == BlobKind::Chunk { &self.data } else { &self.meta };
        let (loc, full) = {
            let mut w = slot.lock().unwrap_or_else(|e| e.into_inner());
            let pool = (e.kind == BlobKind::Chunk).then(|| self.packs.clone());
            let writer = w.get_or_insert_with(|| PackWriter::new(pool));
            let loc = writer.add(e.kind, e.id, e.loc.raw_len, e.loc.compression, sealed);
            let full = if writer.len() >= target { w.take() } else { None };
            (loc, full)
        };
        if let Some(pack) = full {
            self.send(pack)?;
        }
        Ok(loc)
    }

    fn send(&self, pack: PackWriter) -> Result<(), RepoError> {
        let finished = pack.finish(&self.repo);
        let tx = self.queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match tx {
            Some(tx) => tx.send(finished).map_err(|_| RepoError::Invalid("the upload threads stopped".into())),
            None => Err(RepoError::Invalid("saver already finished".into())),
        }?;
        self.flush_index(false)
    }

    /// Writes an index for uploaded packs (every `index_every` packs, or all if `all`).
    fn flush_index(&self, all: bool) -> Result<(), RepoError> {
        let indexed = self.repo.indexed_packs();
        let batch: Vec<(Id, Vec<BlobEntry>)> = {
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if s.done.is_empty() || (!all && s.done.len() < self.index_every) {
                return Ok(());
            }
            let uploaded = s.uploaded.clone();
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.done)
                .into_iter()
                .partition(|(_, _, deps)| deps.iter().all(|d| uploaded.contains(d) || indexed.contains(d)));
            if all && !waiting.is_empty() {
                return Err(RepoError::Invalid("internal: metadata refers to packs that were never uploaded".into()));
            }
            s.done = waiting;
            ready.into_iter().map(|(id, entries, _)| (id, entries)).collect()
        };
        let (_, n) = self.repo.write_index(&batch)?;
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).stats.stored_bytes += n;
        Ok(())
    }

    /// Uploads what is pending, waits for every upload, and indexes everything.
    pub fn finish(&self) -> Result<SaveStats, RepoError> {
        for slot in [&self.data, &self.meta] {
            let pack = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = pack.filter(|p| !p.entries.is_empty()) {
                self.send(p)?;
            }
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        for h in self.uploaders.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = h.join();
        }
        self.check()?;
        self.flush_index(true)?;
        Ok(self.shared.lock().unwrap_or_else(|e| e.into_inner()).stats.clone())
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        for h in self.uploaders.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = h.join();
        }
    }
}

fn upload_loop(repo: &Repository, rx: &Mutex<Receiver<Finished>>, shared: &Mutex<Shared>) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, bytes, entries, deps)) = next else { return };
        if shared.lock().unwrap_or_else(|e| e.into_inner()).error.is_some() {
            continue;
        }
        let len = bytes.len() as u64;
        match repo.backend().put_new(&format::pack_key(&id), bytes) {
            Ok(()) => {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.stats.pack_ids.push(id);
                s.stats.stored_bytes += len;
                s.uploaded.insert(id);
                s.done.push((id, entries, deps));
            }
            Err(e) => {
                tracing::error!(error = %e, pack = %id.short(), "pack upload failed");
                shared.lock().unwrap_or_else(|e| e.into_inner()).error.get_or_insert(e);
            }
        }
    }
}

/// Reads a pack's header (for packs no index lists, left by an interrupted run).
pub fn read_pack_header(repo: &Repository, pack: &Id, size: u64) -> Result<Vec<BlobEntry>, RepoError> {
    let key = format::pack_key(pack);
    if size < 4 {
        return Err(RepoError::corrupt(&key, "too short"));
    }
    let tail = repo.backend().get_range(&key, size - 4..size)?;
    let hlen = u32::from_le_bytes(tail[..4].try_into().unwrap_or_default()) as u64;
    if hlen + 4 > size {
        return Err(RepoError::corrupt(&key, "header length exceeds the pack"));
    }
    let sealed = repo.backend().get_range(&key, size - 4 - hlen..size - 4)?;
    let plain = repo.cipher().open(&sealed, AAD_PACK_HEADER).map_err(|e| RepoError::corrupt(&key, e))?;
    format::decode_pack_header(*pack, &plain).map_err(|e| RepoError::corrupt(&key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize, seed: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"seq\":{},\"user\":\"u{}\"}}\n", i, (i as u32 ^ seed) % 97).into_bytes())
            .collect()
    }

    fn decoded(out: &[u8], capacity: usize) -> Vec<u8> {
        zstd::bulk::Decompressor::new().unwrap().decompress(out, capacity).unwrap()
    }

    /// Whatever way the parts are compressed (one frame per part, gathered into one
    /// buffer, or streamed), a zstd decoder gives back their concatenation.
    #[test]
    fn every_way_of_compressing_parts_decodes_to_their_concatenation() {
        let head = vec![3u8; 40];
        let (a, b) = (text(20_000, 1), text(9_000, 2));
        let small = text(100, 3);
        let big = text(200_000, 4);
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![&head, &a, &b],         // frames: every part after the first is long
            vec![&head, &a, &small, &b], // gathered: a short part in the middle
            vec![&head, &big, &small],   // streamed: more than GATHER_MAX in all
            vec![&a],
        ];
        for parts in cases {
            let whole: Vec<u8> = parts.concat();
            let mut out = Vec::new();
            assert!(compress_parts(&parts, 1, &mut out), "{} bytes did not shrink", whole.len());
            assert!(out.len() < whole.len() / 4);
            assert_eq!(decoded(&out, whole.len()), whole);
        }
    }

    #[test]
    fn long_parts_are_compressed_as_frames_of_their_own() {
        let head = vec![3u8; 40];
        let (a, b) = (text(20_000, 1), text(9_000, 2));
        assert!(a.len() >= FRAME_MIN && b.len() >= FRAME_MIN);
        let mut out = Vec::new();
        assert!(compress_parts(&[&head, &a, &b], 1, &mut out));
        let mut frames = 0;
        let mut rest = &out[..];
        while !rest.is_empty() {
            let n = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
            rest = &rest[n..];
            frames += 1;
        }
        assert_eq!(frames, 3);
    }

    #[test]
    fn after_an_incompressible_blob_only_samples_decide() {
        let noise = crate::repo::chunker::tests::pseudo_random(1 << 20, 9);
        let text: Vec<u8> = (0..1 << 20).map(|i| b"lifeline restores "[i % 18]).collect();
        let mut out = Vec::new();
        // Noise does not shrink: the next large blob is sampled first.
        assert!(worth_trying(&[&noise[..1000], &noise[1000..]], 1));
        assert!(!compress_parts(&[&noise], 1, &mut out));
        LAST_INCOMPRESSIBLE.set(true);
        assert!(!worth_trying(&[&noise[..1000], &noise[1000..]], 1), "noise is not tried again");
        assert!(worth_trying(&[&text[..5], &text[5..]], 1), "text is");
        // Text only in the middle, or only at the end, is found by a sample.
        let mut middle = noise.clone();
        middle[400 << 10..600 << 10].copy_from_slice(&text[..200 << 10]);
        assert!(worth_trying(&[&middle], 1));
        let mut end = noise.clone();
        end[(1 << 20) - (20 << 10)..].copy_from_slice(&text[..20 << 10]);
        assert!(worth_trying(&[&end[..7], &end[7..(1 << 20) - 9000], &end[(1 << 20) - 9000..]], 1));
        // Small blobs are always tried.
        assert!(worth_trying(&[&noise[..100 << 10]], 1));
        LAST_INCOMPRESSIBLE.set(false);
        assert!(worth_trying(&[&noise], 1));
    }

    #[test]
    fn incompressible_parts_are_reported_as_such() {
        let noise = crate::repo::chunker::tests::pseudo_random(300_000, 0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::new();
        assert!(!compress_parts(&[&[1, 2, 3], &noise[..150_000], &noise[150_000..]], 1, &mut out));
        assert!(!compress_parts(&[&noise], 1, &mut out));
    }
}
