//! Heartbeats: how a site says it is alive to the sites that stand by for it. The
//! operator of a cluster that runs protected workloads writes, into each location its
//! active policies use, one small plain JSON object per namespace on a cadence, at
//! `heartbeats/<namespace>/<cluster-id>/<epoch>.json` (the epoch zero-padded to 20
//! digits, one higher each beat), then deletes its older beats. A reader lists the
//! prefix and takes each cluster's highest epoch. Like fencing markers they are readable
//! without the operator and without the key.
//!
//! A standby decides on the epochs it sees advance by its own clock, not on the times
//! written in the beats: clocks of two sites need not agree.

use crate::store::{Backend, StoreError};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "heartbeats/";

/// One heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Beat {
    pub epoch: u64,
    /// The cluster that is alive.
    pub cluster_id: String,
    pub namespace: String,
    /// The BackupPolicies of the namespace that are active there (not suspended, not
    /// fenced) and use this location.
    pub policies: Vec<String>,
    /// RFC 3339, by the writer's clock.
    pub time: String,
    /// Seconds between beats.
    pub interval_seconds: u64,
}

fn dir(namespace: &str, cluster: &str) -> String {
    format!("{PREFIX}{namespace}/{cluster}/")
}

fn key(namespace: &str, cluster: &str, epoch: u64) -> String {
    format!("{}{epoch:020}.json", dir(namespace, cluster))
}

/// `(cluster, epoch)` of a beat's key under `heartbeats/<namespace>/`.
fn parse(rest: &str) -> Option<(&str, u64)> {
    let (cluster, file) = rest.split_once('/')?;
    Some((cluster, file.strip_suffix(".json")?.parse().ok()?))
}

/// The highest epoch `cluster` has written for `namespace` at this location.
pub fn last_epoch(b: &dyn Backend, namespace: &str, cluster: &str) -> Result<u64, StoreError> {
    let d = dir(namespace, cluster);
    Ok(b.list(&d)?
        .iter()
        .filter_map(|o| o.key.strip_prefix(&d)?.strip_suffix(".json")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0))
}

/// Writes `beat` (with its epoch), then deletes the same cluster's older beats.
pub fn write(b: &dyn Backend, beat: &Beat) -> Result<(), StoreError> {
    let data = serde_json::to_vec_pretty(beat).unwrap_or_default();
    match b.put_new(&key(&beat.namespace, &beat.cluster_id, beat.epoch), data.into()) {
        // Written already (a retried beat): fine.
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    b.flush()?;
    let d = dir(&beat.namespace, &beat.cluster_id);
    for o in b.list(&d)? {
        let old = o.key.strip_prefix(&d).and_then(|f| f.strip_suffix(".json")?.parse::<u64>().ok());
        if old.is_some_and(|e| e < beat.epoch) {
            b.delete(&o.key)?;
        }
    }
    Ok(())
}

/// The newest beat of each cluster for `namespace` at this location. A beat that cannot
/// be read (deleted between the listing and the read, or damaged) falls back to the next
/// lower epoch, else is left out.
pub fn read(b: &dyn Backend, namespace: &str) -> Result<Vec<Beat>, StoreError> {
    let d = format!("{PREFIX}{namespace}/");
    let mut by_cluster: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    for o in b.list(&d)? {
        if let Some((cluster, epoch)) = o.key.strip_prefix(&d).and_then(parse) {
            by_cluster.entry(cluster.to_string()).or_default().push((epoch, o.key.clone()));
        }
    }
    let mut out = Vec::new();
    for (_, mut beats) in by_cluster {
        beats.sort();
        for (_, k) in beats.iter().rev() {
            match b.get(k) {
                Ok(data) => {
                    if let Ok(beat) = serde_json::from_slice::<Beat>(&data) {
                        out.push(beat);
                        break;
                    }
                }
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_each_clusters_newest_beat_and_old_beats_go() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let b =
            crate::store::open(&url, &crate::store::LocationOptions { create: true, ..Default::default() }).unwrap();
        let beat = |cluster: &str, epoch: u64| Beat {
            epoch,
            cluster_id: cluster.into(),
            namespace: "shop".into(),
            policies: vec!["db".into()],
            time: "2026-12-01T00:00:00Z".into(),
            interval_seconds: 10,
        };
        assert!(read(b.as_ref(), "shop").unwrap().is_empty());
        for e in 1..=3 {
            write(b.as_ref(), &beat("east", e)).unwrap();
        }
        write(b.as_ref(), &beat("west", 7)).unwrap();
        let mut seen: Vec<(String, u64)> =
            read(b.as_ref(), "shop").unwrap().into_iter().map(|b| (b.cluster_id, b.epoch)).collect();
        seen.sort();
        assert_eq!(seen, vec![("east".to_string(), 3), ("west".to_string(), 7)]);
        assert_eq!(b.list("heartbeats/shop/east/").unwrap().len(), 1, "older beats are deleted");
        assert_eq!(last_epoch(b.as_ref(), "shop", "east").unwrap(), 3);
        assert!(read(b.as_ref(), "other").unwrap().is_empty(), "namespaces are apart");
    }
}
