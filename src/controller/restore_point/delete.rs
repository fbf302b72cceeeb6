//! Deleting one restore point's data on an explicit request: the annotation
//! `lifeline.io/delete-data` (its value is the reason) on the RestorePoint. Besides
//! retention, this is the only way Lifeline deletes backup data; deleting the RestorePoint
//! object, its policy or its namespace never does.
//!
//! The request waits for the run (and any copy of the point) to finish, then forgets the
//! point at every location where this cluster may write, using the policy's key (or, with
//! the policy gone, the location's `keySecret`). Each location is marked as no longer
//! holding the point as soon as it is done, so a crash resumes with the rest. When no
//! location holds it any more, an Event on the point and on its policy records who asked,
//! why, and where the data went from, and the object is removed. A location this cluster
//! can only read (or does not have) keeps its copy: the object stays `Degraded` with
//! reason `DeleteIncomplete` naming it, since catalog sync would list it again.

use crate::api::common::SecretKeyRef;
use crate::api::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::api::location::AccessMode;
use crate::api::names::{ANNOTATION_DELETE_DATA, LABEL_RESTORE_POINT};
use crate::api::{BackupLocation, BackupPolicy, RestorePoint, RestorePointStatus};
use crate::controller::location::access;
use crate::controller::restore_point::machine::{JobOutcome, job_outcome};
use crate::controller::{Context, Error, Result};
use crate::k8s::{ANNOTATION_CATALOG, apply, conditions, events};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::collections::BTreeSet;
use std::time::Duration;

/// The reason given with a request to delete the point's data, if one was made.
pub fn requested(p: &RestorePoint) -> Option<&str> {
    p.annotations().get(ANNOTATION_DELETE_DATA).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Takes the next step of a deletion request; the caller writes `st` afterwards, unless
/// this returns `None`: the data is gone and so is the object.
pub async fn step(ctx: &Context, point: &RestorePoint, st: &mut RestorePointStatus) -> Result<Option<Action>> {
    let ns = point.namespace().unwrap_or_default();
    let name = point.name_any();
    let now = ctx.now();
    let generation = point.meta().generation;
    let reason = requested(point).unwrap_or_default().to_string();
    let who = crate::k8s::requester(point.meta(), ANNOTATION_DELETE_DATA).unwrap_or_else(|| "an unknown user".into());

    // A copy of this point still being written would bring the data back where it was
    // just deleted: wait for it, then remove the finished Jobs.
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{LABEL_RESTORE_POINT}={}", crate::k8s::truncate_label(&name)));
    for j in jobs.list(&lp).await.map_err(Error::kube("list the restore point's Jobs"))?.items {
        if matches!(job_outcome(&j, None), JobOutcome::Running) {
            let msg = format!("deleting the data waits for Job {} to finish", j.name_any());
            progressing(st, "DeleteWaiting", &msg, generation, now);
            return Ok(Some(Action::requeue(Duration::from_secs(2))));
        }
        apply::delete(&jobs, &j.name_any()).await.map_err(Error::kube(format!("remove Job {}", j.name_any())))?;
    }

    let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let policy = policies
        .get_opt(&point.spec.policy)
        .await
        .map_err(Error::kube(format!("read BackupPolicy {}", point.spec.policy)))?;
    let present: BTreeSet<String> = st.locations.iter().filter(|l| l.present).map(|l| l.name.clone()).collect();
    // Everywhere the point may have data: where it is recorded, where the catalog found
    // it, and the policy's locations (a failed run may have left volumes at the primary).
    let mut candidates: BTreeSet<String> = st.locations.iter().map(|l| l.name.clone()).collect();
    candidates.extend(point.annotations().get(ANNOTATION_CATALOG).cloned());
    if let Some(p) = &policy {
        candidates.extend(p.spec.locations.iter().map(|l| l.name.clone()));
    }
    let locations: Api<BackupLocation> = Api::namespaced(ctx.client.clone(), &ns);
    let points: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
    let mut remains = Vec::new();
    let mut done = Vec::new();
    for lname in &candidates {
        let holds = present.contains(lname);
        let loc = locations.get_opt(lname).await.map_err(Error::kube(format!("read BackupLocation {lname}")))?;
        let blocked = match &loc {
            None => Some(format!("{lname}: no BackupLocation {ns}/{lname} in this cluster")),
            Some(l) if l.spec.access_mode == AccessMode::ReadOnly => {
                Some(format!("{lname}: the BackupLocation is ReadOnly in this cluster"))
            }
            Some(_) => None,
        };
        if let Some(b) = blocked {
            if holds {
                remains.push(b);
            }
            continue;
        }
        let Some(loc) = loc else { continue };
        let (key, field): (&SecretKeyRef, String) = match (&policy, &loc.spec.key_secret) {
            (Some(p), _) => {
                (&p.spec.encryption.key_secret, format!("BackupPolicy {}: spec.encryption.keySecret", p.name_any()))
            }
            (None, Some(k)) => (k, format!("BackupLocation {lname}: spec.keySecret")),
            (None, None) => {
                if holds {
                    remains.push(format!(
                        "{lname}: no key (the BackupPolicy {} is gone and the BackupLocation has no spec.keySecret)",
                        point.spec.policy
                    ));
                }
                continue;
            }
        };
        match access::forget_points(ctx, &loc, key, &field, std::slice::from_ref(&name)).await {
            Ok(n) => {
                if n > 0 || holds {
                    done.push(format!("{lname} ({n} repository snapshot(s))"));
                }
                if holds {
                    let note = format!("deleted on request of {who}");
                    apply::apply_presence(&points, &name, lname, false, None, Some(&note))
                        .await
                        .map_err(Error::kube(format!("record the deletion of {name} at {lname}")))?;
                    if let Some(l) = st.locations.iter_mut().find(|l| &l.name == lname) {
                        l.present = false;
                        l.message = Some(note);
                    }
                }
            }
            Err(Error::Invalid(msg)) if holds => remains.push(format!("{lname}: {msg}")),
            // Where the point is complete, a failure is retried (the condition names it).
            Err(e) if holds => return Err(e),
            // Elsewhere this only looked for leftovers of a failed run (a location that
            // never got a repository, one out of reach): nothing to keep the request for.
            Err(e) => tracing::debug!(location = %lname, error = %e, "no leftovers removed"),
        }
    }

    if !remains.is_empty() {
        let msg = format!("the data could not be deleted everywhere; it remains at {}", remains.join("; "));
        if conditions::get(&st.conditions, DEGRADED).map(|c| c.message.as_str()) != Some(msg.as_str()) {
            ctx.events.warning(&point.object_ref(&()), events::DATA_DELETE_BLOCKED, "DeleteData", msg.clone()).await;
        }
        conditions::set(&mut st.conditions, DEGRADED, true, "DeleteIncomplete", &msg, generation, now);
        conditions::set(&mut st.conditions, READY, false, "DeleteIncomplete", &msg, generation, now);
        st.message = Some(msg);
        return Ok(Some(Action::requeue(Duration::from_secs(300))));
    }
    let from = if done.is_empty() { "no location held it".to_string() } else { format!("from {}", done.join(", ")) };
    let note = format!("data of restore point {name} deleted on request of {who} (reason: {reason}); {from}");
    ctx.events.normal(&point.object_ref(&()), events::DATA_DELETED, "DeleteData", note.clone()).await;
    if let Some(p) = &policy {
        ctx.events.normal(&p.object_ref(&()), events::DATA_DELETED, "DeleteData", note.clone()).await;
    }
    tracing::info!(namespace = %ns, restore_point = %name, requested_by = %who, reason = %reason, "{note}");
    apply::delete(&points, &name).await.map_err(Error::kube(format!("remove RestorePoint {name}")))?;
    Ok(None)
}

fn progressing(st: &mut RestorePointStatus, reason: &str, msg: &str, generation: Option<i64>, now: jiff::Timestamp) {
    conditions::set(&mut st.conditions, PROGRESSING, true, reason, msg, generation, now);
    st.message = Some(msg.to_string());
}
