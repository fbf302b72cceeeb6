//! Policies that cannot work: each gets a Degraded condition and an Event naming the
//! field or object at fault, and nothing is snapshotted even when a run is requested.

use super::{Env, example, system_clock};
use crate::support::s3;
use kube::api::Api;
use lifeline::api::BackupPolicy;
use lifeline::sim::Options as SimOptions;

fn policy(name: &str, body: &str) -> String {
    format!(
        r#"apiVersion: lifeline.io/v1alpha1
kind: BackupPolicy
metadata:
  name: {name}
  namespace: records
  annotations:
    lifeline.io/run-now: "please"
spec:
{body}"#
    )
}

const GOOD: &str = r#"  protect:
    statefulSets: [records]
  schedule: "0 0 1 1 *"
  locations:
    - name: eu
      role: Primary
  encryption:
    keySecret:
      name: records-repository-key
      key: passphrase
  retention:
    keepLast: 3
"#;

#[test]
fn impossible_policies_are_degraded_with_the_field_named_and_nothing_is_snapshotted() {
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("invalid");
    // The example's objects, without its policy (its repository gets created by the
    // valid policy below, without a run).
    let yaml = example("records-two-regions.yaml", &prefix);
    let objects =
        yaml.split("\n---\n").filter(|d| !d.contains("kind: BackupPolicy")).collect::<Vec<_>>().join("\n---\n");
    env.apply(&objects);
    env.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: other-key\n  namespace: records\nstringData:\n  passphrase: not the passphrase of the repository\n",
    );
    env.start_operator(system_clock());
    let valid = policy("valid", GOOD).replace("    lifeline.io/run-now: \"please\"\n", "    lifeline.io/none: \"\"\n");
    env.apply(&valid);
    let api: Api<BackupPolicy> = Api::namespaced(env.client.clone(), "records");
    let ready = |name: &'static str| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move {
                let p = api.get_opt(name).await.ok()??;
                let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
                Some(c)
            }
        }
    };
    let c = env.eventually(60, "the valid policy to be Ready", ready("valid"));
    assert_eq!(c.status, "True", "{c:?}");

    let cases = [
        ("bad-cron", GOOD.replace("\"0 0 1 1 *\"", "\"61 * * * *\""), "spec.schedule"),
        (
            "no-location",
            GOOD.replace("    - name: eu\n", "    - name: nowhere\n"),
            "BackupLocation records/nowhere not found",
        ),
        (
            "selects-nothing",
            GOOD.replace(
                "    statefulSets: [records]\n",
                "    persistentVolumeClaimSelector:\n      matchLabels: {app: none}\n",
            ),
            "selects no PersistentVolumeClaim",
        ),
        (
            "no-hook-container",
            format!(
                "{GOOD}  consistency:\n    mode: Application\n    preHooks:\n      - name: flush\n        container: database\n        command: [\"sync\"]\n"
            ),
            "spec.consistency.preHooks[0].container: Pod records-0 has no container \"database\"",
        ),
        (
            "no-secret",
            GOOD.replace("      name: records-repository-key\n", "      name: missing-key\n"),
            "Secret records/missing-key not found",
        ),
        (
            "wrong-key",
            GOOD.replace("      name: records-repository-key\n", "      name: other-key\n"),
            "does not open the repository at BackupLocation eu",
        ),
    ];
    for (name, body, _) in &cases {
        env.apply(&policy(name, body));
    }
    for (name, _, expect) in cases {
        let api = api.clone();
        let degraded = env.eventually(60, &format!("policy {name} to be Degraded"), || {
            let api = api.clone();
            async move {
                let p = api.get_opt(name).await.ok()??;
                p.status?.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.status == "True")
            }
        });
        assert_eq!(degraded.reason, "InvalidSpec", "{name}: {degraded:?}");
        assert!(degraded.message.contains(expect), "{name}: {:?} does not name {expect:?}", degraded.message);
        env.eventually(30, &format!("an InvalidSpec Event about {name}"), || async {
            let events = env.kubectl(
                &[
                    "get",
                    "events.v1.events.k8s.io",
                    "-n",
                    "records",
                    "-o",
                    "jsonpath={range .items[*]}{.regarding.name} {.reason}{\"\\n\"}{end}",
                ],
                None,
            );
            events.lines().any(|l| l == format!("{name} InvalidSpec")).then_some(())
        });
    }
    // Nothing was snapshotted, and no run was started for any of them.
    let snaps = env.kubectl(&["get", "volumesnapshots", "-n", "records", "-o", "name"], None);
    assert!(snaps.trim().is_empty(), "{snaps}");
    assert!(env.points("records").is_empty(), "runs were started");
}
