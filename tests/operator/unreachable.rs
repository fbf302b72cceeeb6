//! A region lost and back: while the replica's S3 server is down, runs still complete at
//! the primary, the policy is Degraded with `LocationUnreachable` and says which location
//! fails; when the server returns, the missing copy is filled in and the policy recovers.

use super::{Env, example_at, system_clock};
use crate::support::s3::{self, S3Server};
use kube::api::Api;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupPolicy, RestorePoint};
use lifeline::sim::Options as SimOptions;

#[test]
fn a_region_down_degrades_the_policy_and_its_copy_is_filled_in_when_it_returns() {
    // Servers of this test's own: one is killed.
    let eu = S3Server::start("lifeline");
    let mut us = S3Server::start("lifeline");
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("region");
    let yaml = example_at("records-two-regions.yaml", &prefix, &eu.endpoint, &us.endpoint)
        .replace("  replicas: 3\n", "  replicas: 1\n")
        .replace(
            "  keySecret:\n    name: records-repository-key\n",
            "  checkInterval: 2s\n  keySecret:\n    name: records-repository-key\n",
        );
    env.apply(&yaml);
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    env.start_operator(system_clock());
    let points: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    let policies: Api<BackupPolicy> = Api::namespaced(env.client.clone(), "records");
    let at_us = |name: String| {
        let points = points.clone();
        move || {
            let (points, name) = (points.clone(), name.clone());
            async move {
                let p = points.get_opt(&name).await.ok()??;
                p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
            }
        }
    };
    env.kubectl(&["annotate", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=one"], None);
    let one = env.new_point("records", &[], 60);
    assert_eq!(env.finished_point("records", &one, 120).status.unwrap().phase, RunPhase::Completed);
    env.eventually(60, "the first copy", at_us(one.clone()));

    us.kill();
    env.kubectl(&["annotate", "--overwrite", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=two"], None);
    let two = env.new_point("records", std::slice::from_ref(&one), 60);
    let st = env.finished_point("records", &two, 120).status.unwrap();
    assert_eq!(st.phase, RunPhase::Completed, "the primary region still takes the run: {:?}", st.message);
    let degraded = env.eventually(180, "the policy Degraded with LocationUnreachable", || async {
        let p = policies.get_opt("records").await.ok()??;
        let s = p.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "True")?.clone();
        let us = s.locations.iter().find(|l| l.name == "us")?.clone();
        (c.reason == "LocationUnreachable").then_some((c, us))
    });
    assert!(degraded.0.message.contains("us"), "{:?}", degraded.0);
    assert_eq!(format!("{:?}", degraded.1.state), "Failing");
    let loc = env.kubectl(
        &[
            "get",
            "backuplocation",
            "us",
            "-n",
            "records",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ],
        None,
    );
    assert_eq!(loc, "LocationUnreachable");

    us.restart();
    env.eventually(180, "the missing copy filled in", at_us(two.clone()));
    env.eventually(60, "the policy no longer Degraded", || async {
        let p = policies.get_opt("records").await.ok()??;
        let s = p.status?;
        s.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "False").then_some(())
    });
    let records = super::crash::records_at(&format!("s3://lifeline/{prefix}-us"), &us.endpoint);
    assert!(records.contains_key(&two) && records.contains_key(&one), "{records:?}");
}
