//! Continuous DR: a warm standby kept current in place, promoted far faster than a cold
//! restore of the same data; automatic failover when the primary's heartbeat stops at
//! every location, and none while one location alone is unreachable.

use super::{Env, example, system_clock};
use crate::support::s3;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use lifeline::api::RestorePlan;
use lifeline::api::restore_plan::PlanPhase;
use lifeline::sim::Options as SimOptions;
use std::time::Duration;

/// Bytes of incompressible data each of the three records volumes gets. Both RTOs
/// include starting the workload (three Pods in order) and the API and object-storage
/// round trips, which stretch most under load, while the warm promotion's own work
/// (fencing two locations at once) is small; 128 MiB a volume keeps the cold restore's
/// data part large enough for the quarter to hold on a loaded 2-core machine too (96 MiB
/// a volume, alone: warm about 0.8 s, cold about 8.5 s; beside four busy loops: warm
/// 0.9–5.2 s, cold 11–22 s).
const BULK: u64 = 128 << 20;
/// Runs of 60 KiB rewritten in each volume between the two points: about 1 %.
const CHANGED_RUNS: u64 = BULK / 100 / 61440 + 1;

const WARM: &str = r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: warm
  namespace: records
spec:
  mode: WarmStandby
  source:
    locations: [eu, us]
    policy: records
"#;

const REFUSED: &str = r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: empty
  namespace: records
spec:
  mode: WarmStandby
  source:
    locations: [eu, us]
    policy: never-protected
  failover:
    promote: true
---
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: stale
  namespace: records
spec:
  mode: Failover
  source:
    locations: [eu, us]
    policy: records
  target:
    namespace: records-stale
  failover:
    maxDataAge: 1s
"#;

const COLD: &str = r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: cold
  namespace: records
spec:
  mode: Restore
  source:
    locations: [eu, us]
    policy: records
  pointInTime:
    type: Named
    restorePoint: POINT
  target:
    namespace: records-cold
"#;

#[test]
fn a_warm_standby_refreshes_in_place_and_promotes_far_faster_than_a_cold_restore() {
    let mut primary = Env::start(SimOptions::default());
    let prefix = s3::unique("warm");
    let yaml = example("records-two-regions.yaml", &prefix);
    primary.apply(&yaml);
    primary.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    for i in 0..3 {
        primary.exec(&format!("records-{i}"), &format!("head -c {BULK} /dev/urandom > /data/bulk"));
    }
    primary.start_operator(system_clock());
    let first = primary.take_point("first", &[]);

    let mut standby = Env::start(SimOptions::default());
    standby.apply(&super::standby_locations(&yaml));
    standby.start_operator(system_clock());
    standby.in_catalog(&first);
    standby.apply(WARM);
    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), "records");
    let held = |point: String, refreshes: i64| {
        let plans = plans.clone();
        standby.eventually(240, &format!("the standby to hold {point}"), move || {
            let (plans, point) = (plans.clone(), point.clone());
            async move {
                let st = plans.get_opt("warm").await.ok()??.status?;
                assert_ne!(st.phase, PlanPhase::Failed, "{:?}", st.message);
                let sb = st.standby.clone()?;
                (st.phase == PlanPhase::Standby
                    && sb.point.as_deref() == Some(point.as_str())
                    && sb.refreshes == refreshes)
                    .then_some(st)
            }
        })
    };
    let st = held(first.clone(), 1);
    assert!(st.volumes.iter().all(|v| v.done && v.digest.is_some()), "{:?}", st.volumes);
    let sts: Api<StatefulSet> = Api::namespaced(standby.client.clone(), "records");
    let s = standby.block_on(sts.get("records")).unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(0), "a warm standby holds its workload at zero");
    let pvcs = standby.kubectl(&["get", "pvc", "-n", "records", "-o", "name"], None);
    assert_eq!(pvcs.lines().count(), 3, "{pvcs}");

    // Refused promotions: a standby with no restore point yet, and data older than the
    // plan allows. Nothing is created for either.
    standby.apply(REFUSED);
    for (plan, reason, words) in
        [("empty", "PromotionRefused", "no restore point to promote"), ("stale", "DataTooOld", "maxDataAge 1s")]
    {
        let c = standby.eventually(60, &format!("plan {plan} to refuse"), || async {
            let st = plans.get_opt(plan).await.ok()??.status?;
            st.conditions.iter().find(|c| c.type_ == "Ready" && c.reason == reason).cloned()
        });
        assert!(c.status == "False" && c.message.contains(words), "{plan}: {c:?}");
        let story =
            standby.event_messages("records", if plan == "stale" { "PromotionRefused" } else { "RestoreWaiting" });
        assert!(story.contains(words), "{plan}: {story}");
    }
    let (ok, _, _) = crate::sim::kubectl(&standby.kubeconfig, &["get", "namespace", "records-stale"], None);
    assert!(!ok, "a refused failover creates nothing");
    standby.kubectl(&["delete", "restoreplan/empty", "restoreplan/stale", "-n", "records"], None);

    // About 1 % of each volume changes (runs of 60 KiB spread over it), and a new point
    // is taken.
    for i in 0..3 {
        let script = (0..CHANGED_RUNS)
            .map(|k| {
                format!(
                    "dd if=/dev/urandom of=/data/bulk bs=61440 count=1 seek={} conv=notrunc 2>/dev/null",
                    40 + k * (BULK / 61440 - 80) / CHANGED_RUNS + i
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        primary.exec(&format!("records-{i}"), &script);
    }
    let second = primary.take_point("second", std::slice::from_ref(&first));
    let (_, us) = s3::regions();
    let recorded = super::recorded_logs(&format!("s3://lifeline/{prefix}-us"), &us.endpoint, &second);
    let st = held(second.clone(), 2);
    let sb = st.standby.clone().unwrap();
    let total: i64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    let written = sb.last_refresh_bytes.unwrap();
    println!(
        "warm standby refresh: wrote {written} of {total} bytes ({:.2} %) in {}",
        written as f64 * 100.0 / total as f64,
        sb.last_refresh_duration.unwrap()
    );
    assert!(total as u64 >= 3 * BULK, "{total}");
    assert!(written > 0 && written * 20 < total, "a refresh after a 1 % change wrote {written} of {total} bytes");
    assert!(sb.lag.is_some(), "{sb:?}");
    // The primary's view of its policy (spec.rpo 9000h in the tests' copy): met.
    let policy = [("policy", "records/records")];
    assert_eq!(primary.metric("rpo_target_seconds", &policy), Some(9000.0 * 3600.0));
    assert_eq!(primary.metric("rpo_breached", &policy), Some(0.0));
    assert!(primary.metric("backup_last_success_timestamp_seconds", &policy).is_some());
    let plan = [("plan", "records/warm"), ("mode", "WarmStandby")];
    let lag = standby.metric("standby_lag_seconds", &plan).expect("the standby lag is exported");
    assert!(lag >= Duration::from(sb.lag.unwrap()).as_secs_f64() - 1.0, "{lag} {:?}", sb.lag);
    assert_eq!(standby.metric("standby_last_refresh_bytes", &plan), Some(written as f64));

    // The same point restored cold, in the same cluster, for comparison.
    standby.apply(&COLD.replace("POINT", &second));
    let cold = standby.completed_plan("records", "cold", 300);
    let cold_rto = Duration::from(cold.rto.unwrap().execution.unwrap());

    // The primary site is lost; the standby is promoted.
    primary.kill_cluster();
    standby.kubectl(
        &[
            "patch",
            "restoreplan/warm",
            "-n",
            "records",
            "--type=merge",
            "-p",
            r#"{"spec":{"failover":{"promote":true}}}"#,
        ],
        None,
    );
    let st = standby.completed_plan("records", "warm", 240);
    let rto = st.rto.clone().unwrap();
    let warm_rto = Duration::from(rto.execution.unwrap());
    let timeline = |plan: &str| standby.plan_timeline("records", plan);
    println!("RTO: cold restore {cold_rto:?}, warm standby promotion {warm_rto:?}\nwarm:\n{}", timeline("warm"));
    // The promotion moves no data: it starts from the point the standby holds, and no
    // volume is restored after it began. Its time is then the fixed steps (fencing,
    // scaling, readiness), which stretch on a loaded machine while the cold restore's
    // data path does not shrink: the bound leaves room for that.
    let warm_timeline = timeline("warm");
    let promotion = warm_timeline.split_once("Promoting:").map(|(_, after)| after).unwrap_or_default();
    assert!(promotion.contains("(held already)"), "the promotion did not start from the held point:\n{warm_timeline}");
    assert!(!promotion.contains("VolumeRestored"), "a volume was restored during the promotion:\n{warm_timeline}");
    assert!(
        warm_rto.as_secs_f64() < 0.4 * cold_rto.as_secs_f64(),
        "warm {warm_rto:?} is not far below cold {cold_rto:?}\nwarm:\n{warm_timeline}\ncold:\n{}",
        timeline("cold")
    );
    assert_eq!(st.restored_point.as_ref().unwrap().name, second);
    assert!(st.fencing.as_ref().is_some_and(|f| f.epoch == Some(1)), "{:?}", st.fencing);
    // The operator's cache sees the final status a moment after the test does.
    standby.eventually(10, "the RTO exported", || async {
        let labels = [("plan", "records/warm"), ("part", "execution")];
        (standby.metric("restore_rto_seconds", &labels) == Some(warm_rto.as_secs_f64())).then_some(())
    });
    assert_eq!(standby.metric("restore_phase", &[("plan", "records/warm"), ("phase", "Completed")]), Some(1.0));
    assert_eq!(standby.metric("standby_lag_seconds", &[("plan", "records/warm")]), None, "promoted: no standby");
    super::in_order(
        &standby.plan_story("records", "warm"),
        &[
            "RestoreStarted",
            "StandbyReady",
            "StandbyRefreshing",
            "Promoting",
            "Fencing",
            "WorkloadStarted",
            "RestoreCompleted",
        ],
    );
    // Every record of the point, in the promoted workload.
    standby.holds_records(&recorded);
}

const AUTO: &str = r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: auto
  namespace: records
spec:
  mode: Failover
  source:
    locations: [eu, us]
    policy: records
  trigger:
    type: HeartbeatLoss
    heartbeat:
      timeout: 8s
      decisionDelay: 2s
"#;

/// The standby reads `eu` through an endpoint nothing answers at, and `us` as it is.
#[test]
fn heartbeat_loss_at_every_location_fails_over_by_itself_one_unreachable_location_does_not() {
    let mut primary = Env::start(SimOptions::default());
    let prefix = s3::unique("auto");
    let yaml = example("records-two-regions.yaml", &prefix);
    let name = primary.protected_point(&yaml);
    let (eu, us) = s3::regions();
    let recorded = super::recorded_logs(&format!("s3://lifeline/{prefix}-us"), &us.endpoint, &name);

    let mut standby = Env::start(SimOptions::default());
    let locations = super::standby_locations(&yaml).replacen(&eu.endpoint, "http://127.0.0.1:9", 1);
    standby.apply(&locations);
    standby.start_operator(system_clock());
    standby.in_catalog(&name);
    standby.apply(AUTO);
    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), "records");
    // Armed: the heartbeat advances at us; eu cannot be read.
    let armed = standby.eventually(60, "the plan to be armed", || async {
        let st = plans.get_opt("auto").await.ok()??.status?;
        let hb = st.heartbeat.clone()?;
        let state = |l: &str| hb.locations.iter().find(|s| s.location == l).map(|s| s.state.clone());
        (state("us").as_deref() == Some("Alive") && state("eu").as_deref() == Some("Unreachable")).then_some(st)
    });
    assert_eq!(armed.phase, PlanPhase::Pending);
    let ready = armed.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Armed"), "{ready:?}");
    // Three timeouts with eu unreachable and the primary alive: no failover.
    std::thread::sleep(Duration::from_secs(24));
    let st = standby.block_on(plans.get("auto")).unwrap().status.unwrap();
    assert_eq!(st.phase, PlanPhase::Pending, "one unreachable location is not a site loss: {:?}", st.message);
    assert!(st.heartbeat.as_ref().unwrap().loss_detected.is_none(), "{:?}", st.heartbeat);

    // The primary site goes: the standby takes over by itself.
    let killed = jiff::Timestamp::now();
    primary.kill_cluster();
    let st = standby.completed_plan("records", "auto", 240);
    let took = jiff::Timestamp::now().duration_since(killed).unsigned_abs();
    let rto = st.rto.clone().unwrap();
    let (detection, decision, execution) =
        (rto.detection.map(Duration::from), rto.decision.map(Duration::from), rto.execution.map(Duration::from));
    println!(
        "automatic failover {took:?} after the kill: detection {detection:?}, decision {decision:?}, execution {execution:?}"
    );
    let (detection, decision, execution) = (detection.unwrap(), decision.unwrap(), execution.unwrap());
    // Status times are whole seconds: a second either way.
    assert!(detection >= Duration::from_secs(7) && detection < Duration::from_secs(20), "{detection:?}");
    assert!(decision >= Duration::from_secs(1) && decision < Duration::from_secs(8), "{decision:?}");
    assert!(execution > Duration::ZERO && execution < took, "{execution:?}");
    // Silence (8 s) + decision delay (2 s) + a bounded time to look, decide and restore.
    assert!(took < Duration::from_secs(8 + 2 + 60), "{took:?}");
    let silent = st.heartbeat.as_ref().unwrap();
    let state = |l: &str| silent.locations.iter().find(|s| s.location == l).map(|s| s.state.clone());
    assert_eq!((state("eu").as_deref(), state("us").as_deref()), (Some("Unreachable"), Some("Silent")));
    let story = standby.event_messages("records", "HeartbeatLost");
    assert!(story.contains("eu (Unreachable)") && story.contains("us (Silent)"), "{story}");
    super::in_order(
        &standby.plan_story("records", "auto"),
        &["HeartbeatLost", "RestoreStarted", "RestorePointChosen", "Fencing", "VolumesRestored", "RestoreCompleted"],
    );
    // Every record of the restore point in the running workload.
    standby.holds_records(&recorded);
}
