//! Fencing markers: how a site that took over a workload tells the site it took it from
//! to stand down. A marker is a small plain JSON object next to the repository, at
//! `fencing/<namespace>/<policy>/<epoch>.json` (the epoch zero-padded to 20 digits), so it
//! can be read without the operator and without the key. Epochs only grow: a new marker
//! takes the highest one found plus one, created only if that name is still free, so two
//! sites that fence at once get different epochs and the higher one wins.

use crate::store::{Backend, StoreError};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "fencing/";

/// One marker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub epoch: u64,
    /// Namespace and name of the BackupPolicy whose workload was taken over.
    pub namespace: String,
    pub policy: String,
    /// The cluster that took over (it may write; every other cluster must not).
    pub cluster_id: String,
    /// RFC 3339.
    pub time: String,
    /// `namespace/name` of the RestorePlan that took over.
    pub plan: String,
    /// The restore point it restored.
    pub restore_point: String,
}

fn key(namespace: &str, policy: &str, epoch: u64) -> String {
    format!("{PREFIX}{namespace}/{policy}/{epoch:020}.json")
}

/// The newest marker of each policy at a location. Only each policy's highest epoch is
/// read; a marker that cannot be read is skipped for the next lower one (it fences
/// nothing; the next one written has a higher epoch anyway).
pub fn read(b: &dyn Backend) -> Result<Vec<Marker>, StoreError> {
    read_under(b, PREFIX)
}

/// [`read`] for the policies of one namespace.
pub fn read_namespace(b: &dyn Backend, namespace: &str) -> Result<Vec<Marker>, StoreError> {
    read_under(b, &format!("{PREFIX}{namespace}/"))
}

/// The newest marker of one policy at a location, if any.
pub fn newest(b: &dyn Backend, namespace: &str, policy: &str) -> Result<Option<Marker>, StoreError> {
    Ok(read_under(b, &format!("{PREFIX}{namespace}/{policy}/"))?.pop())
}

fn read_under(b: &dyn Backend, prefix: &str) -> Result<Vec<Marker>, StoreError> {
    // Keys sort by policy, then by the zero-padded epoch.
    let mut by_policy: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for o in b.list(prefix)? {
        if let Some((dir, _)) = o.key.rsplit_once('/') {
            by_policy.entry(dir.to_string()).or_default().push(o.key);
        }
    }
    let mut out = Vec::new();
    for keys in by_policy.into_values() {
        let found = keys.iter().rev().find_map(|k| serde_json::from_slice::<Marker>(&b.get(k).ok()?).ok());
        out.extend(found);
    }
    Ok(out)
}

/// Writes `m` with exactly its epoch; [`StoreError::AlreadyExists`] if that epoch is taken
/// at this location. A takeover writes one epoch into all its locations this way.
pub fn write_epoch(b: &dyn Backend, m: &Marker) -> Result<(), StoreError> {
    let data = serde_json::to_vec_pretty(m).unwrap_or_default();
    b.put_new(&key(&m.namespace, &m.policy, m.epoch), data.into())?;
    b.flush()
}

/// Writes a marker with the next epoch for `m.namespace`/`m.policy`; returns it.
pub fn write(b: &dyn Backend, mut m: Marker) -> Result<Marker, StoreError> {
    let prefix = format!("{PREFIX}{}/{}/", m.namespace, m.policy);
    for _ in 0..8 {
        let top = b
            .list(&prefix)?
            .iter()
            .filter_map(|o| o.key.rsplit('/').next()?.strip_suffix(".json")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        m.epoch = top + 1;
        let data = serde_json::to_vec_pretty(&m).unwrap_or_default();
        match b.put_new(&key(&m.namespace, &m.policy, m.epoch), data.into()) {
            Ok(()) => {
                b.flush()?;
                return Ok(m);
            }
            // Another site took this epoch a moment ago: take the next.
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::AlreadyExists { url: b.url().to_string(), key: key(&m.namespace, &m.policy, m.epoch) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(cluster: &str) -> Marker {
        Marker {
            epoch: 0,
            namespace: "shop".into(),
            policy: "db".into(),
            cluster_id: cluster.into(),
            time: "2026-12-01T00:00:00Z".into(),
            plan: "shop/failover".into(),
            restore_point: "db-1".into(),
        }
    }

    #[test]
    fn epochs_grow_and_the_newest_marker_of_a_policy_wins() {
        let dir = std::env::temp_dir().join(format!("lifeline-fence-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let b =
            crate::store::open(&url, &crate::store::LocationOptions { create: true, ..Default::default() }).unwrap();
        assert!(read(b.as_ref()).unwrap().is_empty());
        assert_eq!(write(b.as_ref(), marker("standby")).unwrap().epoch, 1);
        assert_eq!(write(b.as_ref(), marker("primary")).unwrap().epoch, 2);
        let mut other = marker("standby");
        other.policy = "queue".into();
        assert_eq!(write(b.as_ref(), other).unwrap().epoch, 1);
        b.put_new("fencing/shop/db/00000000000000000009.json", "not json".into()).unwrap();
        let found = read(b.as_ref()).unwrap();
        assert_eq!(found.len(), 2);
        let db = found.iter().find(|m| m.policy == "db").unwrap();
        assert_eq!((db.epoch, db.cluster_id.as_str()), (2, "primary"));
        // The unreadable object took epoch 9's name: the next marker is 10.
        assert_eq!(write(b.as_ref(), marker("standby")).unwrap().epoch, 10);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
