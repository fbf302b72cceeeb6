//! Content-defined chunking at two levels: FastCDC v2020 chunks (average 32 KiB, so a
//! scattered 8 KiB page change costs little), grouped into segments (about 32 chunks)
//! whose boundaries depend on the chunk ids, so both levels move with the content.

use super::format::{ChunkerParams, Id};

pub struct Chunker {
    params: ChunkerParams,
    masks: (u64, u64),
    /// FastCDC's gear table (seeded) and the same shifted left once.
    gear: Box<Gear>,
    id_key: [u8; 32],
}

impl Chunker {
    pub fn new(params: ChunkerParams, gear_seed: u64, id_key: [u8; 32]) -> Self {
        let masks = fastcdc::v2020::select_masks(params.avg as usize, fastcdc::v2020::Normalization::Level1);
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(gear_seed);
        let table = |t: &[u64]| <[u64; 256]>::try_from(t).expect("FastCDC's gear tables have 256 entries");
        let gear = Box::new(Gear { plain: table(&gear), shifted: table(&gear_ls) });
        Self { params, masks, gear, id_key }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at least
    /// `max` bytes unless it is the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = self.params;
        if data.len() <= p.min as usize {
            return data.len();
        }
        let len = cut_gear(data, (p.min as usize, p.avg as usize, p.max as usize), self.masks, &self.gear);
        len.max(1)
    }

    /// Keyed BLAKE3 id of a blob's plaintext.
    pub fn id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// A hasher giving [`Chunker::id`] of everything fed to it, for data that is never
    /// whole in memory.
    pub fn id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// Whether a segment ends after the chunk `id`, which is its `count`-th chunk.
    pub fn ends_segment(&self, id: &Id, count: usize) -> bool {
        let low = u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
        let mask = (1u32 << self.params.segment_bits) - 1;
        low & mask == 0 || count >= self.params.segment_max_chunks as usize
    }

    /// Id of a data blob: keyed hash of the ids and lengths of the chunks it holds (its
    /// content is checked chunk by chunk, so every byte is hashed once).
    pub fn data_blob_id(&self, chunks: &[(Id, u32)]) -> Id {
        self.list_id(b"lifeline data blob v1", chunks)
    }

    /// Id of a segment: keyed hash of its chunk ids and lengths, so identical content
    /// gives an identical segment id in every repository sharing the master key.
    pub fn segment_id(&self, chunks: &[(Id, u32)]) -> Id {
        self.list_id(b"lifeline segment v1", chunks)
    }

    /// Keyed hash of a domain tag and a list of (chunk id, length).
    fn list_id(&self, domain: &[u8], chunks: &[(Id, u32)]) -> Id {
        let mut h = blake3::Hasher::new_keyed(&self.id_key);
        h.update(domain);
        for (id, len) in chunks {
            h.update(&id.0);
            h.update(&len.to_le_bytes());
        }
        Id(*h.finalize().as_bytes())
    }
}

/// FastCDC's gear table and the same shifted left once, side by side: one base address
/// for both lookups, each an indexed load with an offset.
struct Gear {
    plain: [u64; 256],
    shifted: [u64; 256],
}

/// FastCDC v2020's cut (`fastcdc::v2020::cut_gear`, normalized, two bytes a step), with
/// the same cut points, computed faster. A fifth to a third of a backup's CPU time went to
/// that loop. Here the bytes are taken eight at a time (no bounds checks), and the hash's
/// dependency chain is one shift-and-add per pair (the pair's two table entries are added
/// to each other off that chain). The loop was bound by loads on two-load-port CPUs: both
/// tables' addresses and the masks did not fit in registers beside the loop's state and
/// were reloaded for every pair, and each pair kept the offset it would return in a
/// register. Now both tables sit behind one address, and a pair that cuts leaves the loop
/// for [`exact`], which finds the offset. On a 2-core AMD EPYC (Zen 1), the cut alone went
/// from 1.22 to 1.51 GB/s on the `make bench` PostgreSQL files and from 1.35 to 1.67 GB/s
/// on its logs; in a full backup, its CPU samples from 1.17 to 0.98 times zstd's.
fn cut_gear(src: &[u8], (min, avg, max): (usize, usize, usize), (mask_s, mask_l): (u64, u64), gear: &Gear) -> usize {
    let mut remaining = src.len();
    if remaining <= min {
        return remaining;
    }
    let mut center = avg;
    if remaining > max {
        remaining = max;
    } else if remaining < center {
        center = remaining;
    }
    let src = &src[..remaining];
    // Byte pairs start at even offsets from `min / 2 * 2`; the strict mask holds before
    // `center`, the relaxed one after, up to the last whole pair.
    let (start, split, end) = (min / 2 * 2, center / 2 * 2, remaining / 2 * 2);
    let mut hash = 0;
    if let Some(at) = scan_pairs(src, start, split, &mut hash, mask_s, gear) {
        return at;
    }
    if let Some(at) = scan_pairs(src, start.max(split), end, &mut hash, mask_l, gear) {
        return at;
    }
    remaining
}

/// Tests the byte pairs of `src[from..to]` (an even length): the first offset whose
/// hash, carried in `hash`, has no bit of `mask` set.
#[inline(always)]
fn scan_pairs(src: &[u8], from: usize, to: usize, hash: &mut u64, mask: u64, gear: &Gear) -> Option<usize> {
    if from >= to {
        return None;
    }
    let mask_ls = mask << 1;
    let mut h = *hash;
    let region = &src[from..to];
    let mut eights = region.chunks_exact(8);
    let mut at = from;
    for e in &mut eights {
        let before = h;
        for k in 0..4 {
            let first;
            (first, h) = pair(h, e[2 * k], e[2 * k + 1], gear);
            if (first & mask_ls == 0) | (h & mask == 0) {
                return exact(before, e, at, mask, gear).ok();
            }
        }
        at += 8;
    }
    match exact(h, eights.remainder(), at, mask, gear) {
        Ok(cut) => Some(cut),
        Err(h) => {
            *hash = h;
            None
        }
    }
}

/// The offset of the first cut in the byte pairs of `pairs` (which start at offset `at`,
/// with the hash `h` before them), one test at a time, off the hot loop; without a cut,
/// the hash after them.
#[cold]
#[inline(never)]
fn exact(mut h: u64, pairs: &[u8], at: usize, mask: u64, gear: &Gear) -> Result<usize, u64> {
    for (k, p) in pairs.chunks_exact(2).enumerate() {
        let first;
        (first, h) = pair(h, p[0], p[1], gear);
        if first & (mask << 1) == 0 {
            return Ok(at + 2 * k);
        }
        if h & mask == 0 {
            return Ok(at + 2 * k + 1);
        }
    }
    Err(h)
}

/// One byte pair from the hash `h`: the hash after its first byte (shifted left once, as
/// FastCDC keeps it, for the test against the shifted mask) and after its second. The
/// pair's two table entries are added to each other off the hash's dependency chain.
#[inline(always)]
fn pair(h: u64, b0: u8, b1: u8, gear: &Gear) -> (u64, u64) {
    let g0 = gear.shifted[b0 as usize];
    (shift_add(h, g0), shift_add(h, g0.wrapping_add(gear.plain[b1 as usize])))
}

/// `(h << 2) + add`, as one instruction the compiler cannot reassociate: otherwise it
/// folds `h << 2 + (g0 + g1)` back into `(h << 2 + g0) + g1`, two additions on the
/// hash's chain instead of one.
#[inline(always)]
fn shift_add(h: u64, add: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let out: u64;
        // SAFETY: arithmetic on registers only.
        unsafe {
            std::arch::asm!("lea {o}, [{a} + {h}*4]", o = lateout(reg) out, a = in(reg) add, h = in(reg) h,
                options(pure, nomem, nostack, preserves_flags));
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (h << 2).wrapping_add(add)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn chunks(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = c.cut(&data[pos..]);
            out.push(n);
            pos += n;
        }
        out
    }

    /// `n` bytes of xorshift noise from `seed` (incompressible, and the same every run).
    pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_respect_bounds_and_cover_the_input() {
        let c = Chunker::new(ChunkerParams::default(), 42, [1; 32]);
        let data = pseudo_random(4 << 20, 7);
        let sizes = chunks(&c, &data);
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        let p = ChunkerParams::default();
        for s in &sizes[..sizes.len() - 1] {
            assert!(*s >= p.min as usize && *s <= p.max as usize, "chunk of {s} bytes");
        }
        let avg = data.len() / sizes.len();
        assert!(avg > p.avg as usize / 2 && avg < p.avg as usize * 2, "average {avg}");
    }

    #[test]
    fn a_local_change_moves_only_nearby_boundaries() {
        let c = Chunker::new(ChunkerParams::default(), 42, [1; 32]);
        let mut data = pseudo_random(2 << 20, 3);
        let before: Vec<Id> = split_ids(&c, &data);
        data[1 << 20] ^= 0xff;
        let after: Vec<Id> = split_ids(&c, &data);
        let changed = after.iter().filter(|id| !before.contains(id)).count();
        assert!(changed <= 2, "{changed} chunks changed for one byte");
    }

    fn split_ids(c: &Chunker, data: &[u8]) -> Vec<Id> {
        let mut pos = 0;
        let mut ids = Vec::new();
        for n in chunks(c, data) {
            ids.push(c.id(&data[pos..pos + n]));
            pos += n;
        }
        ids
    }

    /// The cut is FastCDC v2020's, exactly: noise, runs of zeros, text-like data, every
    /// length around the bounds, seeded and unseeded tables, and other bounds.
    #[test]
    fn cuts_are_those_of_fastcdc() {
        let mut data = pseudo_random(3 << 20, 11);
        data[1 << 20..(1 << 20) + 300_000].fill(0);
        for (i, b) in data[2 << 20..].iter_mut().enumerate() {
            *b = b"abcdefgh ,.\n"[(*b as usize + i / 7) % 12];
        }
        for params in [(8 << 10, 32 << 10, 128 << 10), (64, 256, 1024), (2, 4, 16), (4096, 4096, 8192)] {
            for seed in [0, 42] {
                let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(seed);
                let (min, avg, max) = params;
                let c = Chunker::new(ChunkerParams { min, avg, max, ..ChunkerParams::default() }, seed, [1; 32]);
                let (ms, ml) = c.masks;
                let expect = |d: &[u8]| {
                    let (min, avg, max) = (min as usize, avg as usize, max as usize);
                    fastcdc::v2020::cut_gear(d, min, avg, max, ms, ml, ms << 1, ml << 1, &gear, &gear_ls).1.max(1)
                };
                let mut pos = 0;
                let mut n = 0;
                while pos < data.len() {
                    // Every cut of the stream, and cuts of windows of every length near the bounds.
                    let want = expect(&data[pos..]);
                    assert_eq!(c.cut(&data[pos..]), want, "{params:?} seed {seed} at {pos}");
                    let len = [min, avg, max].map(|b| b as usize)[n % 3] + n % 5 - 2;
                    let w = &data[pos..(pos + len.max(1)).min(data.len())];
                    assert_eq!(c.cut(w), if w.len() <= min as usize { w.len() } else { expect(w) }, "window {len}");
                    pos += want;
                    n += 1;
                }
            }
        }
    }

    #[test]
    fn the_gear_seed_changes_boundaries() {
        let data = pseudo_random(1 << 20, 5);
        let a = chunks(&Chunker::new(ChunkerParams::default(), 1, [0; 32]), &data);
        let b = chunks(&Chunker::new(ChunkerParams::default(), 2, [0; 32]), &data);
        assert_ne!(a, b);
    }
}
