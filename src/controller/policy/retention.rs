//! Retention, per location: of the restore points present at a location, those its rules
//! (the location's `retention`, else the policy's) do not keep are forgotten there — the
//! record first, so the point is no longer complete, then its volumes. A point kept
//! nowhere any more has its RestorePoint object removed. This (and an explicit request
//! on one restore point) is the only way Lifeline deletes backup data.

use super::resolve::Resolved;
use super::status;
use crate::api::policy::Retention;
use crate::api::{BackupLocation, BackupPolicy, BackupPolicyStatus, RestorePoint};
use crate::controller::location::access;
use crate::controller::{Context, Error, Result};
use crate::k8s::{apply, events};
use crate::repo::format::Id;
use crate::repo::prune;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The repository's rules from the API's.
pub fn rules(r: &Retention) -> prune::Retention {
    let n = |v: Option<i32>| v.filter(|v| *v > 0).map(|v| v as u32);
    prune::Retention {
        keep_last: n(r.keep_last),
        hourly: n(r.hourly),
        daily: n(r.daily),
        weekly: n(r.weekly),
        monthly: n(r.monthly),
        yearly: n(r.yearly),
        within: r.within.map(Into::into),
    }
}

/// Which of `points` (name, data time) the rules drop (pure).
pub fn to_forget(
    points: &[(String, jiff::Timestamp)],
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
    r: &Retention,
) -> Vec<String> {
    let by_id: BTreeMap<String, &String> =
        points.iter().map(|(n, _)| (Id::of_content(n.as_bytes()).hex(), n)).collect();
    let input: Vec<(Id, jiff::Timestamp)> = points.iter().map(|(n, t)| (Id::of_content(n.as_bytes()), *t)).collect();
    prune::plan(&input, now, tz, &rules(r))
        .into_iter()
        .filter(|d| !d.keep)
        .filter_map(|d| by_id.get(&d.id).map(|n| (*n).clone()))
        .collect()
}

fn present(p: &RestorePoint, loc: &str) -> bool {
    p.status.as_ref().is_some_and(|s| s.locations.iter().any(|l| l.name == loc && l.present))
}

pub async fn run(
    ctx: &Context,
    policy: &BackupPolicy,
    r: &Resolved,
    points: &[RestorePoint],
    st: &mut BackupPolicyStatus,
) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let tz = crate::api::schedule::parse_time_zone(&policy.spec.time_zone).map_err(Error::Invalid)?;
    let now = ctx.now();
    let done = status::completed(points);
    let mut locations: Vec<(&BackupLocation, &Retention)> = vec![(&r.primary, primary_rules(policy))];
    for (pl, loc) in &r.replicas {
        locations.push((loc, pl.retention.as_ref().unwrap_or(&policy.spec.retention)));
    }
    // Per location: what to forget, and how many points stay.
    let mut forget: Vec<(&BackupLocation, String, Vec<String>, usize)> = Vec::new();
    for (loc, rules) in locations {
        let name = loc.name_any();
        let here: Vec<(String, jiff::Timestamp)> =
            done.iter().filter(|p| present(p, &name)).map(|p| (p.name_any(), status::data_time(p))).collect();
        let drop = to_forget(&here, now, &tz, rules);
        if !drop.is_empty() {
            let kept = here.len() - drop.len();
            forget.push((loc, name, drop, kept));
        }
    }
    // Intent first: a prune is recorded as due at each location before anything is
    // forgotten there, so a crash or a failed status write in between never leaves
    // forgotten data that no prune is due to free (the points are gone from the next
    // reconcile's view).
    let before = st.clone();
    for (_, name, _, _) in &forget {
        super::maintenance::mark_due(st, name, super::maintenance::Task::Prune);
    }
    super::write(ctx, policy, &before, st).await?;
    let mut gone_from: BTreeMap<String, usize> = BTreeMap::new();
    for (loc, name, drop, kept) in forget {
        access::forget_points(ctx, loc, &policy.spec.encryption.key_secret, "spec.encryption.keySecret", &drop).await?;
        let api: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
        for p in &drop {
            apply::apply_presence(&api, p, &name, false, None, Some("forgotten by retention"))
                .await
                .map_err(Error::kube(format!("record retention of {p}")))?;
            *gone_from.entry(p.clone()).or_default() += 1;
        }
        let note =
            format!("retention at {name}: forgot {} restore point(s) ({}), kept {}", drop.len(), drop.join(", "), kept);
        ctx.events.normal(&policy.object_ref(&()), events::RETENTION, "Retention", note).await;
    }
    // A point kept nowhere any more is a record of nothing: its object goes too.
    let api: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
    for p in &done {
        let name = p.name_any();
        let still: usize = p.status.as_ref().map_or(0, |s| s.locations.iter().filter(|l| l.present).count());
        if gone_from.get(&name).is_some_and(|n| *n >= still) {
            apply::delete(&api, &name).await.map_err(Error::kube(format!("remove RestorePoint {name}")))?;
        }
    }
    Ok(())
}

fn primary_rules(policy: &BackupPolicy) -> &Retention {
    policy
        .spec
        .locations
        .iter()
        .find(|l| l.role == crate::api::policy::LocationRole::Primary)
        .and_then(|l| l.retention.as_ref())
        .unwrap_or(&policy.spec.retention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_drop_what_no_rule_keeps_and_never_the_newest() {
        let t = |d: i64| {
            "2026-03-01T00:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .checked_add(jiff::SignedDuration::from_hours(24 * d))
                .unwrap()
        };
        let points: Vec<(String, jiff::Timestamp)> = (0..10).map(|d| (format!("p{d}"), t(d))).collect();
        let r = Retention { keep_last: Some(3), ..Default::default() };
        let mut drop = to_forget(&points, t(10), &jiff::tz::TimeZone::UTC, &r);
        drop.sort();
        assert_eq!(drop, (0..7).map(|d| format!("p{d}")).collect::<Vec<_>>());
        let r = Retention { within: Some(std::time::Duration::from_secs(3600).into()), ..Default::default() };
        assert_eq!(to_forget(&points, t(30), &jiff::tz::TimeZone::UTC, &r).len(), 9, "the newest stays");
    }
}
