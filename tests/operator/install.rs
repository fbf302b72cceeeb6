//! `helm install` of the chart into a cluster that enforces RBAC: the simulated node runs
//! the `lifeline` binary as the Deployment's Pod process (its image's entrypoint), as the
//! chart's ServiceAccount, and it backs up a workload with mover Jobs of the same image;
//! `helm upgrade` rolls it and it keeps working; `helm uninstall` removes the operator and
//! keeps the CRDs, the resources and the backup data.

use super::{Env, example, points_at};
use crate::chart;
use crate::support::s3;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use lifeline::sim::{Image, Options as SimOptions};
use std::path::Path;

const NAMESPACE: &str = "lifeline-system";

/// Runs helm with `args` (split at whitespace) against `env`'s cluster.
fn helm(env: &Env, args: &str) -> String {
    let kubeconfig = env.kubeconfig.display().to_string();
    let mut all: Vec<&str> = args.split_whitespace().collect();
    all.extend(["--kubeconfig", &kubeconfig]);
    let (ok, out, err) = chart::run("helm", &all);
    assert!(ok, "helm {args:?}: {err}{out}");
    out
}

#[test]
fn helm_installs_upgrades_and_uninstalls_an_operator_that_runs_from_its_deployment() {
    let image = Image::program("ghcr.io/lifeline-dr/lifeline", Path::new(env!("CARGO_BIN_EXE_lifeline")));
    let env = Env::start_without_crds(SimOptions { rbac: true, images: vec![image], ..Default::default() });
    let c = chart::chart();
    // Two replicas, one leader. The simulated node runs every Pod's process in the host's
    // network: each Pod has its own address, but two listening on every address would
    // contend for the port, so the operators listen on their Pod's address.
    let out = helm(
        &env,
        &format!(
            "install lifeline {c} -n {NAMESPACE} --create-namespace --wait --timeout 120s \
             --set metrics.listenOn=podIP --set heartbeatInterval=2s \
             --set mover.resources.limits.memory=768Mi --set mover.podSecurityContext.fsGroup=1000"
        ),
    );
    assert!(out.contains("STATUS: deployed") && out.contains("rollout status deployment/lifeline"), "{out}");
    let logs = env.kubectl(&["logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=lifeline", "--tail=-1"], None);
    assert_eq!(logs.matches("lifeline operator started").count(), 2, "the Pods do not run the operator: {logs}");

    let prefix = s3::unique("helm");
    let yaml = example("records-two-regions.yaml", &prefix).replace("  replicas: 3\n", "  replicas: 1\n");
    env.apply(&yaml);
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Job>>> = Default::default();
    let watch = {
        let (api, seen) = (Api::<Job>::namespaced(env.client.clone(), "records"), seen.clone());
        env.rt.spawn(async move {
            let mut jobs = std::pin::pin!(watcher(api, Default::default()).applied_objects());
            while let Some(Ok(j)) = jobs.next().await {
                seen.lock().unwrap().push(j);
            }
        })
    };
    let first = env.take_point("first", &[]);
    // The chart's mover settings reached the mover Jobs, through the operator (seen as they
    // ran: a finished run deletes its Jobs).
    watch.abort();
    let movers = seen.lock().unwrap().clone();
    assert!(!movers.is_empty(), "no mover Job seen");
    for j in movers {
        let pod = j.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("768Mi"), "{c:?}");
        assert_eq!(pod.security_context.and_then(|s| s.fs_group), Some(1000));
    }
    let acting = format!("system:serviceaccount:{NAMESPACE}:lifeline");
    let audit = env.audit();
    assert!(
        audit.iter().any(|(a, _)| a.user == acting && a.resource == "restorepoints/status" && a.allowed),
        "the restore point was not written by the chart's ServiceAccount"
    );
    assert!(!audit.iter().any(|(a, _)| a.user == acting && !a.allowed), "a request was refused");

    // An upgrade rolls the Deployment; the new Pod takes over and acts.
    let old = env.kubectl(&["get", "pods", "-n", NAMESPACE, "-o", "name"], None);
    let out = helm(
        &env,
        &format!("upgrade lifeline {c} -n {NAMESPACE} --reuse-values --set logLevel=debug --wait --timeout 120s"),
    );
    assert!(out.contains("has been upgraded"), "{out}");
    let now = env.kubectl(&["get", "pods", "-n", NAMESPACE, "-o", "name"], None);
    assert!(!now.lines().any(|p| old.lines().any(|o| o == p)), "the upgrade did not replace the Pod: {old} / {now}");
    let second = env.take_point("second", std::slice::from_ref(&first));
    let logs = env.kubectl(&["logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=lifeline", "--tail=-1"], None);
    assert!(logs.contains(r#""level":"DEBUG""#), "the upgraded values did not reach the operator: {logs}");

    // Uninstall: the operator goes; CRDs, resources and backup data stay.
    helm(&env, &format!("uninstall lifeline -n {NAMESPACE} --wait --timeout 120s"));
    let (gone, _, _) = crate::sim::kubectl(&env.kubeconfig, &["get", "deployment/lifeline", "-n", NAMESPACE], None);
    assert!(!gone, "the Deployment outlived the release");
    let crds = env.kubectl(&["get", "crd", "-o", "name"], None);
    for k in ["backuppolicies", "backuplocations", "restorepoints", "restoreplans"] {
        assert!(crds.contains(&format!("{k}.lifeline.io")), "{crds}");
    }
    let kept = env.kubectl(&["get", "restorepoints,backuppolicies", "-n", "records", "-o", "name"], None);
    for name in [&first, &second] {
        assert!(kept.contains(&format!("restorepoint.lifeline.io/{name}")), "{kept}");
    }
    assert!(kept.contains("backuppolicy.lifeline.io/records"), "{kept}");
    let (eu, _) = s3::regions();
    let stored = points_at(&format!("s3://lifeline/{prefix}-eu"), &eu.endpoint);
    for name in [&first, &second] {
        assert!(stored.iter().any(|p| p["tags"]["lifeline.io/point"] == name.as_str()), "{name} not at eu");
    }
}
