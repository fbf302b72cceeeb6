//! Keys and authenticated encryption.
//!
//! A repository has one random 32-byte master secret. Key slots (`keys/<id>`) hold it
//! wrapped (AES-256-GCM) under a key-encryption key derived from a passphrase (Argon2id)
//! or from a raw key (HKDF), so keys can be added and removed without rewriting data.
//! From the master secret, HKDF-SHA256 derives: the chunk-id key (keyed BLAKE3), the
//! chunker's gear seed, and a data key per repository (each location is its own
//! repository, so each location has its own data key).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted blob adds to its plaintext: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("authentication failed: the data was modified or belongs to another repository")]
    Authentication,
    #[error("the key or passphrase does not open any key slot of this repository")]
    WrongKey,
    #[error("failed to derive a key: {0}")]
    Kdf(String),
}

/// The repository's master secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    pub fn generate() -> Self {
        Self(random_bytes::<KEY_LEN>())
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn derive(&self, salt: Option<&[u8]>, info: &str) -> [u8; KEY_LEN] {
        hkdf32(salt, &self.0, info)
    }

    /// Key for chunk ids: the same in every repository sharing this master secret, so
    /// copies between locations deduplicate by id.
    pub fn id_key(&self) -> [u8; KEY_LEN] {
        self.derive(None, "lifeline v1 chunk-id")
    }

    /// Seed of the content-defined chunker's gear table.
    pub fn gear_seed(&self) -> u64 {
        let k = self.derive(None, "lifeline v1 chunker-seed");
        u64::from_le_bytes(k[..8].try_into().unwrap_or_default())
    }

    /// What `config.keyCheck` holds for this master secret: HKDF-SHA256 with the
    /// repository id as salt and info `lifeline v1 key check`, in hex. A key slot whose
    /// secret does not give it belongs to another repository (a lost `init` race).
    pub fn key_check(&self, repository_id: &str) -> String {
        self.derive(Some(repository_id.as_bytes()), "lifeline v1 key check")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The data key of one repository (location).
    pub fn data_key(&self, repository_id: &str) -> Cipher {
        Cipher::new(&self.derive(Some(repository_id.as_bytes()), "lifeline v1 data"))
    }
}

/// HKDF-SHA256 to 32 bytes.
pub fn hkdf32(salt: Option<&[u8]>, ikm: &[u8], info: &str) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    hkdf::Hkdf::<sha2::Sha256>::new(salt, ikm)
        .expand(info.as_bytes(), &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// Argon2id parameters, stored in each passphrase slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// 19 MiB, 2 passes: OWASP's minimum for Argon2id, about 50 ms here, so opening a
    /// repository stays cheap while brute force stays expensive.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// Key-encryption key from a passphrase.
pub fn kek_from_passphrase(passphrase: &[u8], salt: &[u8], p: Argon2Params) -> Result<Cipher, CryptoError> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(KEY_LEN))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; KEY_LEN];
    argon.hash_password_into(passphrase, salt, &mut out).map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let c = Cipher::new(&out);
    out.zeroize();
    Ok(c)
}

/// Key-encryption key from a raw key (at least 32 random bytes, for machines).
pub fn kek_from_raw(raw: &[u8], salt: &[u8]) -> Cipher {
    let mut k = hkdf32(Some(salt), raw, "lifeline v1 raw-key slot");
    let c = Cipher::new(&k);
    k.zeroize();
    c
}

/// AES-256-GCM with random 96-bit nonces. Sealed layout: `nonce || ciphertext || tag`.
pub struct Cipher {
    key: LessSafeKey,
}

impl Cipher {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256-GCM");
        Self { key: LessSafeKey::new(unbound) }
    }

    /// Encrypts `plain` bound to `aad`, appending to `out`.
    pub fn seal_into(&self, plain: &[u8], aad: &[u8], out: &mut Vec<u8>) {
        self.seal_parts_into(&[plain], aad, out)
    }

    /// Appends the sealed concatenation of `parts` to `out` (encrypted in place there).
    pub fn seal_parts_into(&self, parts: &[&[u8]], aad: &[u8], out: &mut Vec<u8>) {
        let nonce = random_bytes::<NONCE_LEN>();
        out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        for p in parts {
            out.extend_from_slice(p);
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        out.extend_from_slice(tag.as_ref());
    }

    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        self.seal_into(plain, aad, &mut out);
        out
    }

    /// Decrypts and authenticates a sealed message.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::new();
        self.open_into(sealed, aad, &mut buf)?;
        Ok(buf)
    }

    /// [`Self::open`] into `buf` (cleared first), so a caller can reuse one buffer.
    pub fn open_into(&self, sealed: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        buf.clear();
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::Authentication);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Authentication)?;
        buf.extend_from_slice(body);
        let opened = self.key.open_in_place(nonce, Aad::from(aad), buf).map(|p| p.len());
        let Ok(len) = opened else {
            buf.clear();
            return Err(CryptoError::Authentication);
        };
        buf.truncate(len);
        Ok(())
    }
}

/// Random bytes from the kernel (`getrandom(2)`, which blocks only until the kernel's
/// generator is seeded at boot). Not the crypto library's generator: seeding that one
/// (a jitter entropy source) cost about 30 ms of CPU at the start of every command.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: the kernel writes at most `N - got` bytes into `b[got..]`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(e.kind() == std::io::ErrorKind::Interrupted, "the system random generator failed: {e}");
            continue;
        }
        got += n as usize;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = Cipher::new(&[7u8; 32]);
        let sealed = c.seal(b"hello", b"aad");
        assert_eq!(c.open(&sealed, b"aad").unwrap(), b"hello");
        assert_eq!(c.open(&sealed, b"other"), Err(CryptoError::Authentication));
        let mut bad = sealed.clone();
        bad[NONCE_LEN] ^= 1;
        assert_eq!(c.open(&bad, b"aad"), Err(CryptoError::Authentication));
        assert_ne!(c.seal(b"hello", b"aad"), sealed, "nonces are random");
    }

    #[test]
    fn per_location_data_keys_differ_but_ids_agree() {
        let m = MasterKey::from_bytes([1u8; 32]);
        let sealed = m.data_key("repo-a").seal(b"x", b"");
        assert!(m.data_key("repo-b").open(&sealed, b"").is_err());
        assert_eq!(m.id_key(), MasterKey::from_bytes([1u8; 32]).id_key());
    }

    #[test]
    fn passphrase_kek_depends_on_salt_and_passphrase() {
        let p = Argon2Params { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let a = kek_from_passphrase(b"pw", b"saltsaltsaltsalt", p).unwrap();
        let sealed = a.seal(b"m", b"");
        assert!(kek_from_passphrase(b"pw", b"saltsaltsaltsalt", p).unwrap().open(&sealed, b"").is_ok());
        assert!(kek_from_passphrase(b"pX", b"saltsaltsaltsalt", p).unwrap().open(&sealed, b"").is_err());
    }
}
