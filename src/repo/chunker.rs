//! Content-defined chunking at two levels: FastCDC v2020 chunks (average 32 KiB, so a
//! scattered 8 KiB page change costs little), grouped into segments (about 32 chunks)
//! whose boundaries depend on the chunk ids, so both levels move with the content.

use super::format::{ChunkerParams, Id};
use std::borrow::Cow;

pub struct Chunker {
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    id_key: [u8; 32],
}

impl Chunker {
    pub fn new(params: ChunkerParams, gear_seed: u64, id_key: [u8; 32]) -> Self {
        let masks = fastcdc::v2020::select_masks(params.avg as usize, fastcdc::v2020::Normalization::Level1);
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(gear_seed);
        Self { params, masks, gear, gear_ls, id_key }
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
        let (mask_s, mask_l) = self.masks;
        let (_, len) = fastcdc::v2020::cut_gear(
            data,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        len.max(1)
    }

    /// Keyed BLAKE3 id of a blob's plaintext.
    pub fn id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
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

    #[test]
    fn the_gear_seed_changes_boundaries() {
        let data = pseudo_random(1 << 20, 5);
        let a = chunks(&Chunker::new(ChunkerParams::default(), 1, [0; 32]), &data);
        let b = chunks(&Chunker::new(ChunkerParams::default(), 2, [0; 32]), &data);
        assert_ne!(a, b);
    }
}
