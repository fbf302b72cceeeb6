//! The simulated cluster through a real `kube::Client` (profile `full`), checked against
//! what a real cluster does: controllers with finalizers, optimistic concurrency,
//! validation, garbage collection, Jobs and StatefulSets run by the simulated kubelet,
//! exec, volumes and snapshots, and the loss of a cluster.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, AttachParams, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use lifeline::sim::{Cluster, Options};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A cluster with every controller, and a runtime for the test's client.
fn start() -> (Cluster, tokio::runtime::Runtime) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = Cluster::start(Options::default()).expect("start the simulated cluster");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    (cluster, rt)
}

fn client(cluster: &Cluster) -> Client {
    Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap()
}

/// Polls `f` until it yields a value, or fails after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(ae) => *ae,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "sim.example.io", version = "v1", kind = "Gizmo", namespaced, status = "GizmoStatus")]
pub struct GizmoSpec {
    #[schemars(range(min = 1))]
    size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct GizmoStatus {
    observed: i64,
}

async fn install_gizmos(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = Gizmo::crd();
    // A CEL rule on top of the generated schema.
    let spec = crd.spec.versions[0].schema.as_mut().unwrap().open_api_v3_schema.as_mut().unwrap();
    let spec_schema = spec.properties.as_mut().unwrap().get_mut("spec").unwrap();
    spec_schema.x_kubernetes_validations =
        Some(vec![serde_json::from_value(json!({"rule": "self.size != 13", "message": "13 is unlucky"})).unwrap()]);
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gizmos: Api<Gizmo> = Api::namespaced(client.clone(), "default");
    eventually(10, "the CRD to be served", || async { gizmos.list(&Default::default()).await.ok() }).await;
}

#[test]
fn controller_with_finalizer_reconciles_and_is_retriggered_by_watch_events() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        install_gizmos(&client).await;
        let gizmos: Api<Gizmo> = Api::namespaced(client.clone(), "default");
        let cleaned = Arc::new(Mutex::new(Vec::<String>::new()));
        let ctx = Arc::new((client.clone(), cleaned.clone()));
        async fn reconcile(g: Arc<Gizmo>, ctx: Arc<(Client, Arc<Mutex<Vec<String>>>)>) -> Result<Action, kube::Error> {
            let api: Api<Gizmo> = Api::namespaced(ctx.0.clone(), &g.namespace().unwrap());
            finalizer(&api, "sim.example.io/cleanup", g, |ev| async {
                match ev {
                    Finalizer::Apply(g) => {
                        let status = json!({"status": {"observed": g.spec.size}});
                        api.patch_status(&g.name_any(), &PatchParams::default(), &Patch::Merge(status)).await?;
                    }
                    Finalizer::Cleanup(g) => ctx.1.lock().unwrap().push(g.name_any()),
                }
                Ok(Action::await_change())
            })
            .await
            .map_err(|e| match e {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e
                }
                other => panic!("finalizer: {other}"),
            })
        }
        let controller = Controller::new(gizmos.clone(), watcher::Config::default())
            .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), ctx)
            .for_each(|_| async {});
        let handle = tokio::spawn(controller);

        let g = Gizmo::new("g1", GizmoSpec { size: 1 });
        gizmos.create(&PostParams::default(), &g).await.unwrap();
        let seen = eventually(10, "the first reconcile", || async {
            let g = gizmos.get("g1").await.ok()?;
            (g.status.as_ref()?.observed == 1).then_some(g)
        })
        .await;
        assert_eq!(seen.finalizers(), ["sim.example.io/cleanup"]);

        // A spec change arrives as a watch event and is reconciled again.
        gizmos.patch("g1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
        eventually(10, "the second reconcile", || async {
            (gizmos.get("g1").await.ok()?.status?.observed == 2).then_some(())
        })
        .await;

        // Deletion waits for the finalizer, which the controller removes after cleanup.
        gizmos.delete("g1", &DeleteParams::default()).await.unwrap();
        eventually(10, "the object to go", || async { gizmos.get_opt("g1").await.unwrap().is_none().then_some(()) })
            .await;
        assert_eq!(*cleaned.lock().unwrap(), ["g1"]);
        handle.abort();
    });
}

#[test]
fn stale_update_conflicts_and_invalid_objects_are_rejected_with_the_field() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).unwrap();
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        let mut first = created.clone();
        first.data = Some([("k".to_string(), "2".to_string())].into());
        cms.replace("c", &PostParams::default(), &first).await.unwrap();
        // The same resourceVersion again: someone else wrote in between.
        let mut stale = created;
        stale.data = Some([("k".to_string(), "3".to_string())].into());
        let e = api_error(cms.replace("c", &PostParams::default(), &stale).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert!(e.message.contains("the object has been modified"), "{}", e.message);
        assert_eq!(cms.get("c").await.unwrap().data.unwrap()["k"], "2");

        install_gizmos(&client).await;
        let gizmos: Api<Gizmo> = Api::namespaced(client.clone(), "default");
        let e = api_error(
            gizmos.create(&PostParams::default(), &Gizmo::new("small", GizmoSpec { size: 0 })).await.unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("spec.size"), "{}", e.message);
        let e = api_error(
            gizmos.create(&PostParams::default(), &Gizmo::new("unlucky", GizmoSpec { size: 13 })).await.unwrap_err(),
        );
        assert_eq!(e.code, 422);
        assert!(e.message.contains("13 is unlucky"), "{}", e.message);
        assert!(gizmos.get_opt("unlucky").await.unwrap().is_none());
    });
}

#[test]
fn deleting_an_owner_garbage_collects_its_children() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
        let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
        let child: Secret = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap(),
        }]}}))
        .unwrap();
        secrets.create(&PostParams::default(), &child).await.unwrap();
        let unrelated: Secret = serde_json::from_value(json!({"metadata": {"name": "unrelated"}})).unwrap();
        secrets.create(&PostParams::default(), &unrelated).await.unwrap();
        cms.delete("owner", &DeleteParams::background()).await.unwrap();
        eventually(10, "the child to be collected", || async {
            secrets.get_opt("child").await.unwrap().is_none().then_some(())
        })
        .await;
        assert!(secrets.get_opt("unrelated").await.unwrap().is_some());
    });
}

fn job(name: &str, script: &str, backoff_limit: i32) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", script]}
        ]}}},
    }))
    .unwrap()
}

fn condition(job: &Job, typ: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == typ && c.status == "True")
        .map(|c| (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

#[test]
fn jobs_run_their_command_and_fail_after_the_backoff_limit() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        jobs.create(&PostParams::default(), &job("ok", "echo hello from the job", 2)).await.unwrap();
        jobs.create(&PostParams::default(), &job("bad", "echo attempt; exit 1", 1)).await.unwrap();

        let done = eventually(30, "job ok to complete", || async {
            let j = jobs.get("ok").await.ok()?;
            condition(&j, "Complete").map(|_| j)
        })
        .await;
        assert_eq!(done.status.as_ref().unwrap().succeeded, Some(1));
        let pod = pods.list(&kube::api::ListParams::default().labels("job-name=ok")).await.unwrap().items.remove(0);
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
        let logs = pods.logs(&pod.metadata.name.unwrap(), &Default::default()).await.unwrap();
        assert_eq!(logs, "hello from the job\n");

        // backoffLimit 1: the first failure is retried after the 10 s back-off, the
        // second ends the Job.
        let failed = eventually(60, "job bad to fail", || async {
            let j = jobs.get("bad").await.ok()?;
            condition(&j, "Failed").map(|c| (j, c))
        })
        .await;
        assert_eq!(failed.1.0, "BackoffLimitExceeded");
        assert_eq!(failed.0.status.as_ref().unwrap().failed, Some(2));
        let attempts = pods.list(&kube::api::ListParams::default().labels("job-name=bad")).await.unwrap().items;
        assert_eq!(attempts.len(), 2);
        for p in attempts {
            let st = p.status.unwrap();
            assert_eq!(st.phase.as_deref(), Some("Failed"));
            let term = st.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
            assert_eq!(term.exit_code, 1);
        }
    });
}

async fn running_pod(pods: &Api<Pod>, name: &str, spec: serde_json::Value) {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually(20, "the pod to run", || async {
        let p = pods.get(name).await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
}

#[test]
fn exec_returns_stdout_stderr_and_the_exit_code() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        running_pod(
            &pods,
            "app",
            json!({"containers": [{"name": "app", "image": "app", "env": [{"name": "GREETING", "value": "hi"}]}]}),
        )
        .await;
        let ap = AttachParams::default().stdout(true).stderr(true);
        let mut p = pods.exec("app", ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], &ap).await.unwrap();
        let (mut out, mut err) = (p.stdout().unwrap(), p.stderr().unwrap());
        let status = p.take_status().unwrap();
        let (mut o, mut e) = (String::new(), String::new());
        use tokio::io::AsyncReadExt;
        let (r1, r2) = tokio::join!(out.read_to_string(&mut o), err.read_to_string(&mut e));
        r1.unwrap();
        r2.unwrap();
        let status = status.await.unwrap();
        assert_eq!((o.as_str(), e.as_str()), ("hi\n", "oops\n"));
        assert_eq!(status.status.as_deref(), Some("Failure"));
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        let cause = &status.details.unwrap().causes.unwrap()[0];
        assert_eq!((cause.reason.as_deref(), cause.message.as_deref()), (Some("ExitCode"), Some("3")));

        let mut ok = pods.exec("app", ["true"], &ap).await.unwrap();
        let status = ok.take_status().unwrap().await.unwrap();
        assert_eq!(status.status.as_deref(), Some("Success"));
    });
}

#[test]
fn statefulset_scaled_from_3_to_1_deletes_ordinal_2_then_1() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "db", "image": "db", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        }))
        .unwrap();
        sets.create(&PostParams::default(), &sts).await.unwrap();
        eventually(30, "three ready replicas", || async {
            (sets.get("db").await.ok()?.status?.ready_replicas == Some(3)).then_some(())
        })
        .await;
        let names: Vec<String> = claims.list(&Default::default()).await.unwrap().items.iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["data-db-0", "data-db-1", "data-db-2"]);

        let rv = pods.list(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
        let mut events = pods.watch(&kube::api::WatchParams::default().timeout(20), &rv).await.unwrap().boxed();
        sets.patch_scale("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
        let mut deleted = Vec::new();
        while let Some(ev) = events.try_next().await.unwrap() {
            if let kube::api::WatchEvent::Deleted(p) = ev {
                deleted.push(p.name_any());
                if deleted.len() == 2 {
                    break;
                }
            }
        }
        assert_eq!(deleted, ["db-2", "db-1"]);
        let left: Vec<String> = pods.list(&Default::default()).await.unwrap().items.iter().map(|p| p.name_any()).collect();
        assert_eq!(left, ["db-0"]);
        // Claims outlive the Pods (retention policy Retain).
        assert_eq!(claims.list(&Default::default()).await.unwrap().items.len(), 3);
    });
}

#[test]
fn volumes_snapshots_and_restores_hold_real_data() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
        let claim = |name: &str, source: Option<&str>| -> PersistentVolumeClaim {
            let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
            if let Some(s) = source {
                spec["dataSource"] = json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": s});
            }
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
        };
        let run = |name: &str, claim: &str, script: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "x", "command": ["sh", "-c", script], "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}))
            .unwrap()
        };
        let finished = |name: &'static str| {
            let pods = pods.clone();
            async move {
                eventually(20, name, || async {
                    let phase = pods.get(name).await.ok()?.status?.phase?;
                    matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
                })
                .await
            }
        };
        claims.create(&PostParams::default(), &claim("src", None)).await.unwrap();
        pods.create(&PostParams::default(), &run("writer", "src", "echo before > /data/f")).await.unwrap();
        assert_eq!(finished("writer").await, "Succeeded");
        let bound = claims.get("src").await.unwrap();
        assert_eq!(bound.status.unwrap().phase.as_deref(), Some("Bound"));

        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"));
        let snaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let snap: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "s1"}, "spec": {"source": {"persistentVolumeClaimName": "src"}},
        }))
        .unwrap();
        snaps.create(&PostParams::default(), &snap).await.unwrap();
        eventually(20, "the snapshot to be ready", || async {
            (snaps.get("s1").await.ok()?.data["status"]["readyToUse"] == true).then_some(())
        })
        .await;
        // Later writes do not change the point-in-time copy.
        pods.create(&PostParams::default(), &run("overwriter", "src", "echo after > /data/f")).await.unwrap();
        assert_eq!(finished("overwriter").await, "Succeeded");

        claims.create(&PostParams::default(), &claim("restored", Some("s1"))).await.unwrap();
        pods.create(&PostParams::default(), &run("reader", "restored", "cat /data/f")).await.unwrap();
        assert_eq!(finished("reader").await, "Succeeded");
        assert_eq!(pods.logs("reader", &Default::default()).await.unwrap(), "before\n");

        // A snapshot class configured to fail reports the error on the snapshot.
        let classes = Api::<DynamicObject>::all_with(
            client.clone(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass")),
        );
        let failing: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "broken"},
            "driver": "sim.lifeline.io", "deletionPolicy": "Delete", "parameters": {"sim.lifeline.io/fail": "disk on fire"},
        }))
        .unwrap();
        classes.create(&PostParams::default(), &failing).await.unwrap();
        let mut bad = snap.clone();
        bad.metadata.name = Some("s2".into());
        bad.data["spec"]["volumeSnapshotClassName"] = json!("broken");
        snaps.create(&PostParams::default(), &bad).await.unwrap();
        let msg = eventually(20, "the snapshot error", || async {
            snaps.get("s2").await.ok()?.data["status"]["error"]["message"].as_str().map(String::from)
        })
        .await;
        assert!(msg.contains("disk on fire"), "{msg}");
    });
}

#[test]
fn killing_a_cluster_kills_its_processes() {
    let (mut cluster, rt) = start();
    let pid = rt.block_on(async {
        let client = client(&cluster);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        running_pod(
            &pods,
            "sleeper",
            json!({"containers": [{"name": "s", "image": "x", "command": ["sleep", "600"]}]}),
        )
        .await;
        let st = pods.get("sleeper").await.unwrap().status.unwrap();
        let id = st.container_statuses.unwrap()[0].container_id.clone().unwrap();
        id.trim_start_matches("sim://").parse::<u32>().unwrap()
    });
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    cluster.kill();
    // Reaped by the kill: the process is gone.
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "process {pid} survived the cluster");
}

async fn client_from(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    Client::try_from(cfg).unwrap()
}

#[test]
fn rbac_allows_what_roles_grant_and_forbids_the_rest() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = Cluster::start(Options { rbac: true, ..Default::default() }).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // The cluster serves HTTPS (client-go sends no token over plain HTTP).
        assert!(cluster.url().starts_with("https://"), "{}", cluster.url());
        // No token: 401.
        let anonymous = client_from(&cluster.anonymous_kubeconfig()).await;
        let e = api_error(Api::<ConfigMap>::namespaced(anonymous, "default").list(&Default::default()).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));

        let admin = client_from(&cluster.kubeconfig()).await;
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), "default");
        sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "op"}})).unwrap()).await.unwrap();
        let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), "default");
        roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).unwrap()).await.unwrap();
        let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), "default");
        bindings.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "op-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]})).unwrap()).await.unwrap();

        let op = client_from(&cluster.service_account_kubeconfig("default", "op").unwrap()).await;
        Api::<ConfigMap>::namespaced(op.clone(), "default").list(&Default::default()).await.unwrap();
        let e = api_error(Api::<Secret>::namespaced(op.clone(), "default").list(&Default::default()).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            r#"secrets is forbidden: User "system:serviceaccount:default:op" cannot list resource "secrets" in API group "" in the namespace "default""#
        );
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        let e = api_error(Api::<ConfigMap>::namespaced(op.clone(), "default").create(&PostParams::default(), &cm).await.unwrap_err());
        assert_eq!(e.code, 403);
        let e = api_error(Api::<ConfigMap>::namespaced(op.clone(), "kube-system").list(&Default::default()).await.unwrap_err());
        assert!(e.message.ends_with(r#"in the namespace "kube-system""#), "{}", e.message);
        let e = api_error(Api::<k8s_openapi::api::core::v1::Node>::all(op.clone()).get("sim-node-0").await.unwrap_err());
        assert_eq!(
            e.message,
            r#"nodes "sim-node-0" is forbidden: User "system:serviceaccount:default:op" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
        // A server-side apply that would create the object needs `create` as well as
        // `patch` (handlers/patch.go); with `create` it creates, and then `patch` alone
        // applies to the existing object.
        roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-patcher"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}]})).unwrap()).await.unwrap();
        bindings.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "op-cm-patch"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-patcher"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]})).unwrap()).await.unwrap();
        let ssa = kube::api::PatchParams::apply("op");
        let applied = kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}));
        let cms = Api::<ConfigMap>::namespaced(op.clone(), "default");
        let e = api_error(cms.patch("applied", &ssa, &applied).await.unwrap_err());
        assert_eq!(
            e.message,
            r#"configmaps "applied" is forbidden: User "system:serviceaccount:default:op" cannot create resource "configmaps" in API group "" in the namespace "default""#
        );
        Api::<ConfigMap>::namespaced(admin.clone(), "default").patch("applied", &kube::api::PatchParams::apply("admin"), &applied).await.unwrap();
        cms.patch("applied", &ssa, &kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}}))).await.unwrap();
        // A deleted ServiceAccount's token no longer authenticates.
        sas.delete("op", &DeleteParams::default()).await.unwrap();
        let e = api_error(Api::<ConfigMap>::namespaced(op, "default").list(&Default::default()).await.unwrap_err());
        assert_eq!(e.code, 401);
    });
}

#[test]
fn a_link_to_an_outside_endpoint_can_be_cut_and_restored() {
    use std::io::{Read, Write};
    // An outside endpoint: echoes what it reads.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let echo = |addr: std::net::SocketAddr| -> std::io::Result<String> {
        let mut c = std::net::TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into())
    };
    let mut cluster = Cluster::start(Options::default()).unwrap();
    let via = cluster.link(target).unwrap();
    assert_eq!(cluster.link(target).unwrap(), via, "one link per endpoint");
    assert_eq!(echo(via).unwrap(), "ping");

    let mut open = std::net::TcpStream::connect(via).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    open.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).unwrap();
    cluster.set_link(target, false);
    // Open connections are cut, new ones fail.
    assert!(matches!(open.read(&mut one), Ok(0) | Err(_)));
    assert!(echo(via).is_err());
    cluster.set_link(target, true);
    assert_eq!(echo(via).unwrap(), "ping");

    // The link dies with the cluster and comes back with it.
    cluster.kill();
    assert!(echo(via).is_err());
    cluster.restart().unwrap();
    assert_eq!(echo(via).unwrap(), "ping");
}

#[test]
fn a_job_that_cannot_create_its_pod_reports_it_without_spinning() {
    let (cluster, rt) = start();
    rt.block_on(async {
        let client = client(&cluster);
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let mut j = job("orphan-sa", "true", 1);
        j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().service_account_name = Some("missing".into());
        jobs.create(&PostParams::default(), &j).await.unwrap();
        let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
        let lp = kube::api::ListParams::default().fields("involvedObject.name=orphan-sa,reason=FailedCreate");
        let first =
            eventually(10, "a FailedCreate event", || async { events.list(&lp).await.ok()?.items.into_iter().next() })
                .await;
        assert!(first.message.as_deref().unwrap_or_default().contains(r#"serviceaccount "missing" not found"#));
        // Retries are spaced out (every few seconds), not made on every pass.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let attempts: i32 = events.list(&lp).await.unwrap().items.iter().map(|e| e.count.unwrap_or(1)).sum();
        assert!(attempts <= 2, "{attempts} attempts in about two seconds");
    });
}
