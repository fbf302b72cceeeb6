//! Children of a run are named from the run, so a restarted operator finds them instead
//! of creating a second set.

use crate::k8s::truncate_label;

/// Kubernetes names of Jobs are at most 63 characters (their Pods get a `job-name` label).
const MAX: usize = 63;

fn fit(base: &str, suffix: &str) -> String {
    let full = format!("{base}-{suffix}");
    if full.len() <= MAX {
        return full;
    }
    let short = truncate_label(base);
    let keep = MAX - suffix.len() - 1;
    let h = blake3::hash(base.as_bytes()).to_hex();
    let head: String = short.chars().take(keep.saturating_sub(11)).collect();
    format!("{}-{}-{suffix}", head.trim_end_matches(['-', '.']), &h[..10])
}

/// The VolumeSnapshot of volume `i` (per-volume path).
pub fn snapshot(point: &str, i: usize) -> String {
    fit(point, &i.to_string())
}

/// The VolumeGroupSnapshot of the run.
pub fn group(point: &str) -> String {
    fit(point, "group")
}

/// The claim cloned from volume `i`'s snapshot, which the mover reads.
pub fn clone(point: &str, i: usize) -> String {
    fit(point, &i.to_string())
}

/// The mover Job of volume `i`, attempt `a`.
pub fn job(point: &str, i: usize, a: i32) -> String {
    fit(point, &format!("{i}-{a}"))
}

/// The Job copying a restore point to the policy's replica location `i`.
pub fn replication(point: &str, i: usize) -> String {
    fit(point, &format!("to-{i}"))
}

/// The Job of a maintenance task (`prune`, `verify`) at the policy's location `i` (its
/// index in `spec.locations`).
pub fn maintenance(policy: &str, task: &str, i: usize) -> String {
    fit(policy, &format!("{task}-{i}"))
}

/// The RestorePlan recording the drill of a slot of a policy.
pub fn drill(policy: &str, slot: jiff::Timestamp) -> String {
    fit(policy, &format!("drill-{}", slot.strftime("%Y%m%d-%H%M")))
}

/// The default scratch namespace of a namespace's drills (`<namespace>-drill`).
pub fn scratch_namespace(ns: &str) -> String {
    fit(ns, "drill")
}

/// The RestorePoint of a scheduled slot of a policy.
pub fn scheduled_point(policy: &str, slot: jiff::Timestamp) -> String {
    let stamp = slot.strftime("%Y%m%d-%H%M").to_string();
    fit(policy, &stamp)
}

/// The RestorePoint of an on-demand request (the annotation's value).
pub fn manual_point(policy: &str, request: &str) -> String {
    let h = blake3::hash(request.as_bytes()).to_hex();
    fit(policy, &format!("manual-{}", &h[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_distinct() {
        let t: jiff::Timestamp = "2026-03-01T10:15:00Z".parse().unwrap();
        assert_eq!(scheduled_point("orders-db", t), "orders-db-20260301-1015");
        assert_eq!(job("orders-db-20260301-1015", 2, 0), "orders-db-20260301-1015-2-0");
        let long = "a".repeat(80);
        let j = job(&long, 11, 3);
        assert!(j.len() <= 63 && j.ends_with("-11-3"), "{j}");
        assert_ne!(job(&long, 1, 0), job(&format!("{long}b"), 1, 0));
        assert_eq!(manual_point("db", "x"), manual_point("db", "x"));
        assert_ne!(manual_point("db", "x"), manual_point("db", "y"));
    }
}
