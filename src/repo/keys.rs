//! Key slots: `key add`, `key remove`, `key list`, and unlocking.

use super::crypto::{self, Argon2Params, MasterKey, kek_from_passphrase, kek_from_raw};
use super::format::{Config, Id, Kdf, KeySlot};
use super::{RepoError, Secret, b64, unb64};
use crate::store::Backend;
use bytes::Bytes;
use std::sync::Arc;

const AAD_SLOT: &[u8] = b"lifeline key slot";

/// Adds a slot opening `master` with `secret`; returns the slot id.
pub fn add_slot(backend: &dyn Backend, master: &MasterKey, secret: &Secret) -> Result<Id, RepoError> {
    let salt = crypto::random_bytes::<16>();
    let (kdf, kek) = match secret {
        Secret::Passphrase(p) => {
            let params = Argon2Params::default();
            let kek = kek_from_passphrase(p, &salt, params).map_err(|e| RepoError::Invalid(e.to_string()))?;
            let kdf = Kdf::Argon2id {
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
            };
            (kdf, kek)
        }
        Secret::RawKey(k) => (Kdf::Raw, kek_from_raw(k, &salt)),
    };
    let slot = KeySlot {
        created: jiff::Timestamp::now().to_string(),
        owner: owner(),
        kdf,
        salt: b64(&salt),
        wrapped: b64(&kek.seal(master.as_bytes(), AAD_SLOT)),
    };
    let json = serde_json::to_vec_pretty(&slot).map_err(RepoError::encode)?;
    let id = Id::of_content(&json);
    backend.put_new(&format!("keys/{}", id.hex()), Bytes::from(json))?;
    // A new key may be the only one left after the next `key remove`.
    backend.flush()?;
    Ok(id)
}

/// `user@host` of this process.
pub fn owner() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", hostname())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Every readable slot with its id. A slot that cannot be parsed opens nothing and is
/// left out with a warning (so it never keeps the other keys from opening the
/// repository); one removed since the listing too.
pub fn list(backend: &dyn Backend) -> Result<Vec<(Id, KeySlot)>, RepoError> {
    let mut out = Vec::new();
    for obj in backend.list("keys/")? {
        let Some(id) = obj.key.strip_prefix("keys/").and_then(Id::parse) else { continue };
        let raw = match backend.get(&obj.key) {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<KeySlot>(&raw) {
            Ok(slot) => out.push((id, slot)),
            Err(e) => tracing::warn!(object = %obj.key, error = %e, "damaged key slot ignored"),
        }
    }
    Ok(out)
}

fn try_slot(slot: &KeySlot, secret: &Secret) -> Option<MasterKey> {
    let salt = unb64(&slot.salt)?;
    let kek = match (&slot.kdf, secret) {
        (Kdf::Argon2id { memory_kib, iterations, parallelism }, Secret::Passphrase(p)) => {
            let params = Argon2Params { memory_kib: *memory_kib, iterations: *iterations, parallelism: *parallelism };
            kek_from_passphrase(p, &salt, params).ok()?
        }
        (Kdf::Raw, Secret::RawKey(k)) => kek_from_raw(k, &salt),
        _ => return None,
    };
    let plain = kek.open(&unb64(&slot.wrapped)?, AAD_SLOT).ok()?;
    Some(MasterKey::from_bytes(plain.try_into().ok()?))
}

/// Finds the slot `secret` opens, among the slots whose master secret is this
/// repository's (`config.keyCheck`), and returns it with that slot's id.
pub fn unlock_slot_for(backend: &dyn Backend, config: &Config, secret: &Secret) -> Result<(Id, MasterKey), RepoError> {
    list(backend)?
        .iter()
        .filter_map(|(id, slot)| try_slot(slot, secret).map(|m| (*id, m)))
        .find(|(_, m)| config.key_check.as_ref().is_none_or(|check| *check == m.key_check(&config.id)))
        .ok_or_else(|| RepoError::WrongKey { url: backend.url().into() })
}

/// [`unlock_slot_for`] with the location's config.
pub fn unlock_slot(backend: &dyn Backend, secret: &Secret) -> Result<(Id, MasterKey), RepoError> {
    unlock_slot_for(backend, &super::Repository::read_config(backend)?, secret)
}

pub fn unlock(backend: &dyn Backend, secret: &Secret) -> Result<MasterKey, RepoError> {
    unlock_slot(backend, secret).map(|(_, m)| m)
}

/// Adds a slot for `new`, opening the repository with `secret`. Key changes run one at a
/// time (a `key` lock).
pub fn add(backend: Arc<dyn Backend>, secret: &Secret, new: &Secret) -> Result<Id, RepoError> {
    let _lock = super::lock::acquire_sole(backend.clone(), "key")?;
    let master = unlock(&*backend, secret)?;
    add_slot(&*backend, &master, new)
}

/// Removes a slot; refuses to remove the last one, or the one in use. Key changes run
/// one at a time (a `key` lock); and if the slot in use has vanished all the same (a
/// concurrent removal that did not respect the lock), it is written again, so at least
/// one key always opens the repository.
pub fn remove(backend: Arc<dyn Backend>, secret: &Secret, id_prefix: &str) -> Result<Id, RepoError> {
    let _lock = super::lock::acquire_sole(backend.clone(), "key")?;
    let config = super::Repository::read_config(&*backend)?;
    let (current, master) = unlock_slot_for(&*backend, &config, secret)?;
    let slots = list(&*backend)?;
    let hits: Vec<Id> = slots.iter().map(|(id, _)| *id).filter(|id| id.hex().starts_with(id_prefix)).collect();
    let target = match hits.as_slice() {
        [one] => *one,
        [] => return Err(RepoError::Invalid(format!("no key slot {id_prefix:?}: see `lifeline repo key list`"))),
        _ => return Err(RepoError::Invalid(format!("key slot prefix {id_prefix:?} is ambiguous"))),
    };
    if target == current {
        return Err(RepoError::Invalid(
            "refusing to remove the key slot in use: open the repository with another key to remove this one".into(),
        ));
    }
    backend.delete(&format!("keys/{}", target.hex()))?;
    if unlock_slot_for(&*backend, &config, secret).is_err() {
        let again = add_slot(&*backend, &master, secret)?;
        return Err(RepoError::Invalid(format!(
            "key slot {} was removed, but a concurrent key change removed the slot in use too; it was written again as {}",
            target.short(),
            again.short()
        )));
    }
    Ok(target)
}
