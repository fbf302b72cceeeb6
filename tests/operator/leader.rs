//! Two replicas of the operator: only the leader acts; killed mid-run, it hands over to
//! the other within the Lease's time, and the run completes once.

use super::{Env, example};
use crate::support::s3;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use lifeline::api::RestorePoint;
use lifeline::api::restore_point::RunPhase;
use lifeline::sim::Options as SimOptions;
use std::time::{Duration, Instant};

const LEASE_SECONDS: u64 = 4;

#[test]
fn only_the_leader_acts_and_a_killed_leader_hands_over_within_the_lease_time() {
    let env = Env::start(SimOptions::default());
    let prefix = s3::unique("leader");
    env.apply(&example("records-two-regions.yaml", &prefix).replace("  replicas: 3\n", "  replicas: 2\n"));
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "default");
    let holder = || {
        let leases = leases.clone();
        async move { leases.get_opt("lifeline-operator").await.ok()??.spec?.holder_identity }
    };
    let a = env.start_replica("replica-a", LEASE_SECONDS);
    env.eventually(30, "replica-a to take the Lease", || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    });
    let b = env.start_replica("replica-b", LEASE_SECONDS);

    env.kubectl(&["annotate", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=one"], None);
    let one = env.new_point("records", &[], 60);
    assert_eq!(env.finished_point("records", &one, 120).status.unwrap().phase, RunPhase::Completed);
    assert!(a.reconciles() > 0);
    assert_eq!(b.reconciles(), 0, "the standby acted");

    // A run under way when the leader dies.
    let points: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    env.kubectl(&["annotate", "--overwrite", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=two"], None);
    let two = env.new_point("records", std::slice::from_ref(&one), 60);
    env.eventually(60, "the second run under way", || async {
        let p = points.get_opt(&two).await.ok()??;
        (p.status?.phase != RunPhase::Pending).then_some(())
    });
    a.task.abort();
    let killed = Instant::now();
    env.eventually(30, "replica-b to take the Lease", || async {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    });
    let handover = killed.elapsed();
    // The Lease's time, plus one renewal period of the new leader and the polling here.
    assert!(handover <= Duration::from_secs(LEASE_SECONDS + 3), "handover took {handover:?}");
    let st = env.finished_point("records", &two, 120).status.unwrap();
    assert_eq!(st.phase, RunPhase::Completed, "{:?}", st.message);
    assert!(b.reconciles() > 0);
    super::backup::assert_no_children(&env, "records");
    let (eu, _) = s3::regions();
    let records = super::crash::records_at(&format!("s3://lifeline/{prefix}-eu"), &eu.endpoint);
    assert_eq!((records.get(&one), records.get(&two)), (Some(&1), Some(&1)), "{records:?}");
    eprintln!("handover after the leader was killed: {handover:?}");
    b.task.abort();
}
