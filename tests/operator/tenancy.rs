//! Namespace boundaries (README, "Namespace boundaries"), on one cluster with RBAC on and
//! the operator under the chart's roles: two teams, each with a ServiceAccount that may
//! edit only its own namespace, protect and recover their own workloads through Lifeline.
//! Every way team A could reach team B's namespace or `kube-system` through a Lifeline
//! field is tried (a test each): each is refused (`NotPermitted` naming the field, or the
//! API server where the check is static), and B's and `kube-system`'s objects, Secrets and
//! volumes are compared before and after. An administrator's grant lets exactly the
//! granted restore through; withdrawing it stops the next one.
//!
//! Both teams were given one bucket and one passphrase: the worst case, where only
//! Lifeline keeps them apart. One cluster and both teams serve the module; each test
//! works under names of its own.

use super::{Env, system_clock};
use crate::support::s3;
use kube::ResourceExt;
use kube::api::Api;
use lifeline::api::restore_plan::PlanPhase;
use lifeline::api::{BackupLocation, RestorePoint};
use lifeline::sim::Options as SimOptions;
use serde_json::Value;
use std::sync::OnceLock;

const A: &str = "tenant-a";
const B: &str = "tenant-b";
const SYSTEM: &str = "kube-system";
const PASSPHRASE: &str = "the one passphrase the administrator handed both teams";
const ANNOTATION_GRANT: &str = "lifeline.io/restore-from";

struct Tenants {
    env: Env,
    /// Each team's first restore point (A's, then B's: one name), and one only B has.
    points: [String; 3],
    /// Each team's volume before it lost its workload and after it restored it.
    restored: [(String, String); 2],
    /// The bucket both teams were given.
    url: String,
}

fn tenants() -> &'static Tenants {
    static T: OnceLock<Tenants> = OnceLock::new();
    T.get_or_init(|| {
        let mut env = Env::start(SimOptions { rbac: true, ..Default::default() });
        super::rbac::install_identity(&env);
        // No grant in the operator's settings: only what an administrator sets here.
        env.start_operator_as_with(super::rbac::NAMESPACE, super::rbac::ACCOUNT, system_clock(), |c| {
            c.grants = Default::default()
        });
        let url = format!("s3://lifeline/{}", s3::unique("tenancy"));
        for t in [A, B] {
            admit(&env, t);
            as_team(&env, t, &["apply", "-f", "-"], Some(&workload(t, &url)));
        }
        let mut points = Vec::new();
        for t in [A, B] {
            env.kubectl(&["rollout", "status", "statefulset/app", "-n", t, "--timeout=90s"], None);
            as_team(&env, t, &["annotate", "backuppolicy/app", "lifeline.io/run-now=first"], None);
            let name = env.new_point(t, &[], 60);
            let p = env.finished_point(t, &name, 180);
            assert_eq!(p.status.unwrap().phase, lifeline::api::restore_point::RunPhase::Completed);
            points.push(name);
        }
        // Both teams' first points have the same name (same policy name, same request):
        // one bucket then holds two points of one name. B also takes one only B has.
        assert_eq!(points[0], points[1]);
        as_team(&env, B, &["annotate", "--overwrite", "backuppolicy/app", "lifeline.io/run-now=only-b"], None);
        let only_b = env.new_point(B, &points[1..], 60);
        let p = env.finished_point(B, &only_b, 180);
        assert_eq!(p.status.unwrap().phase, lifeline::api::restore_point::RunPhase::Completed);
        points.push(only_b);
        // Each team recovers its own workload (before the tests, which compare B).
        let restored = [own_restore(&env, A, &points[0]), own_restore(&env, B, &points[1])];
        Tenants { env, points: points.try_into().unwrap(), restored, url }
    })
}

/// What a cluster administrator does for a team: its namespace, a ServiceAccount and a
/// Role that lets it edit what a team edits, in that namespace only.
fn admit(env: &Env, ns: &str) {
    env.kubectl(&["create", "namespace", ns], None);
    env.kubectl(&["create", "serviceaccount", "team", "-n", ns], None);
    let role = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: team-edit, namespace: {ns}}}
rules:
  - apiGroups: [lifeline.io]
    resources: [backuppolicies, restoreplans, restorepoints, backuplocations]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [""]
    resources: [secrets, configmaps, services, persistentvolumeclaims, pods, events]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [""]
    resources: [pods/exec, pods/log]
    verbs: [get, create]
  - apiGroups: [apps]
    resources: [statefulsets]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: team-edit, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: team-edit}}
subjects:
  - {{kind: ServiceAccount, name: team, namespace: {ns}}}
"#
    );
    env.apply(&role);
}

/// kubectl as namespace `ns`'s team (impersonating its ServiceAccount), in `ns`.
fn team(env: &Env, ns: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let user = format!("system:serviceaccount:{ns}:team");
    let mut all = vec!["--as", &user, "-n", ns];
    all.extend_from_slice(args);
    crate::sim::kubectl(&env.kubeconfig, &all, stdin)
}

/// [`team`] that must succeed; its output.
fn as_team(env: &Env, ns: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = team(env, ns, args, stdin);
    assert!(ok, "kubectl as team {ns} {args:?}: {err}{out}");
    out
}

/// A team's workload (one replica that writes its records once, then only reads), its
/// Secrets, a location at the bucket both teams were given, and a policy.
fn workload(ns: &str, url: &str) -> String {
    let (eu, _) = s3::regions();
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: repository-key}}
stringData: {{passphrase: "{PASSPHRASE}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s3-credentials}}
stringData: {{AWS_ACCESS_KEY_ID: "{key}", AWS_SECRET_ACCESS_KEY: "{secret}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-token}}
stringData: {{token: "{token}"}}
---
apiVersion: lifeline.io/v1alpha1
kind: BackupLocation
metadata: {{name: eu}}
spec:
  url: {url}
  endpoint: {endpoint}
  forcePathStyle: true
  credentialsSecret: {{name: s3-credentials}}
  keySecret: {{name: repository-key, key: passphrase}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: app, labels: {{app: app}}}}
spec:
  serviceName: app
  replicas: 1
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers:
        - name: app
          image: busybox:1.37
          command: ["sh", "-c", "[ -s /data/log ] || for i in $(seq 1 500); do echo \"{ns} record $i\" >> /data/log; done; sync; exec sleep 100000"]
          env:
            - name: TOKEN
              valueFrom: {{secretKeyRef: {{name: app-token, key: token}}}}
          volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec:
        accessModes: ["ReadWriteOnce"]
        resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: lifeline.io/v1alpha1
kind: BackupPolicy
metadata: {{name: app}}
spec:
  protect: {{statefulSets: [app]}}
  schedule: "0 0 1 1 *"
  rpo: 9000h
  locations: [{{name: eu, role: Primary}}]
  encryption: {{keySecret: {{name: repository-key, key: passphrase}}}}
  retention: {{keepLast: 10}}
"#,
        key = s3::ACCESS_KEY,
        secret = s3::SECRET_KEY,
        token = token(ns),
        endpoint = eu.endpoint,
    )
}

fn token(ns: &str) -> String {
    format!("application-token-of-{ns}-0451")
}

/// A RestorePlan of team A; `extra` is added to its spec.
fn plan(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: {name}\nspec:\n  source:\n    locations: [eu]\n    policy: app\n{extra}"
    )
}

/// What a namespace holds, as far as anyone could change it: every object's identity,
/// spec and data (not the status its own controllers keep writing), the Pods' identities
/// (none restarted), and the bytes of its volumes.
fn state(env: &Env, ns: &str) -> (Vec<Value>, Vec<(String, u64, String)>) {
    let kinds = "secrets,configmaps,services,persistentvolumeclaims,pods,statefulsets.apps,jobs.batch,\
                 backuppolicies.lifeline.io,backuplocations.lifeline.io,restoreplans.lifeline.io,restorepoints.lifeline.io";
    let out = env.kubectl(&["get", kinds, "-n", ns, "-o", "json"], None);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut objects: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            serde_json::json!({"kind": o["kind"], "name": m["name"], "uid": m["uid"], "labels": m["labels"],
                "annotations": m["annotations"], "deletionTimestamp": m["deletionTimestamp"], "spec": o["spec"],
                "data": o["data"]})
        })
        .collect();
    objects.sort_by_key(|o| format!("{}/{}", o["kind"], o["name"]));
    let pvs: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "PersistentVolumeClaim")
        .filter_map(|o| o["spec"]["volumeName"].as_str().map(String::from))
        .collect();
    let volumes =
        env.volume_digest().into_iter().filter(|(p, _, _)| pvs.iter().any(|v| p.starts_with(v.as_str()))).collect();
    (objects, volumes)
}

/// Runs `attempt` (by team A) and asserts that B and `kube-system` are as they were.
fn leaves_others_alone(t: &Tenants, attempt: impl FnOnce()) {
    let before = [state(&t.env, B), state(&t.env, SYSTEM)];
    assert!(!before[0].1.is_empty(), "team B's volume is seen");
    attempt();
    let after = [state(&t.env, B), state(&t.env, SYSTEM)];
    assert!(before[0] == after[0], "team B's namespace changed:\n{:#?}\n{:#?}", before[0], after[0]);
    assert!(before[1] == after[1], "kube-system changed:\n{:#?}\n{:#?}", before[1], after[1]);
}

/// Team A applies RestorePlan `name`; it must be refused with `NotPermitted` naming
/// `field`, with a warning Event saying the same.
fn refused(t: &Tenants, name: &str, yaml: &str, field: &str) -> String {
    as_team(&t.env, A, &["apply", "-f", "-"], Some(yaml));
    let st = t.env.finished_plan(A, name, 60);
    assert_eq!(st.phase, PlanPhase::Failed, "{name}: {:?}", st.message);
    let degraded = st.conditions.iter().find(|c| c.type_ == "Degraded").expect("a Degraded condition");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "NotPermitted"), "{name}: {degraded:?}");
    assert!(degraded.message.starts_with(&format!("{field}: ")), "{name}: {}", degraded.message);
    let events = t.env.event_messages(A, "NotPermitted");
    assert!(events.contains(&degraded.message), "{name}: no Event says {:?}: {events}", degraded.message);
    // Nothing of the run anywhere: no Jobs, claims or copied Secrets were made.
    let made = t.env.kubectl(
        &["get", "jobs,pvc,secrets", "-A", "-l", &format!("lifeline.io/restore-plan={name}"), "-o", "name"],
        None,
    );
    assert!(made.trim().is_empty(), "{name} made: {made}");
    degraded.message.clone()
}

/// Team A's apply refused by the API server, before the operator sees it; its message.
fn rejected(t: &Tenants, yaml: &str) -> String {
    let (ok, out, err) = team(&t.env, A, &["apply", "-f", "-"], Some(yaml));
    assert!(!ok, "the API server took it: {out}");
    err
}

#[test]
fn each_team_backs_up_and_restores_its_own_workload() {
    let t = tenants();
    for (i, ns) in [A, B].into_iter().enumerate() {
        let points: Api<RestorePoint> = Api::namespaced(t.env.client.clone(), ns);
        assert_eq!(t.env.block_on(points.get(&t.points[i])).unwrap().spec.policy, "app");
        let (before, after) = &t.restored[i];
        assert!(before.starts_with(&format!("{ns} record 1\n")) && before.lines().count() == 500, "{ns}: {before}");
        assert_eq!(after, before, "{ns}: the restored volume differs");
        let st = t.env.completed_plan(ns, "back", 5);
        assert!(st.rto.is_some_and(|r| r.total.is_some()), "{ns}: no RTO measured");
    }
}

/// The team deletes its workload and its claim, and restores them from its first point
/// (as a team would after losing them); the volume's content before and after.
fn own_restore(env: &Env, ns: &str, point: &str) -> (String, String) {
    let before = env.kubectl(&["exec", "-n", ns, "app-0", "--", "cat", "/data/log"], None);
    as_team(env, ns, &["delete", "statefulset", "app", "--wait"], None);
    as_team(env, ns, &["delete", "pvc", "data-app-0", "--wait"], None);
    let yaml = plan("back", &format!("  pointInTime:\n    type: Named\n    restorePoint: {point}\n"));
    as_team(env, ns, &["apply", "-f", "-"], Some(&yaml));
    env.completed_plan(ns, "back", 240);
    env.kubectl(&["rollout", "status", "statefulset/app", "-n", ns, "--timeout=90s"], None);
    let after = env.kubectl(&["exec", "-n", ns, "app-0", "--", "cat", "/data/log"], None);
    (before, after)
}

#[test]
fn a_restore_into_another_namespace_is_refused() {
    let t = tenants();
    for (i, target) in [B, SYSTEM].into_iter().enumerate() {
        let name = format!("into-other-{i}");
        leaves_others_alone(t, || {
            let msg = refused(
                t,
                &name,
                &plan(&name, &format!("  target:\n    namespace: {target}\n")),
                "spec.target.namespace",
            );
            assert!(msg.contains(&format!("namespace {target} does not grant {A}")), "{msg}");
            assert!(msg.contains(ANNOTATION_GRANT), "the missing grant is named: {msg}");
        });
    }
}

#[test]
fn restoring_another_namespaces_restore_points_is_refused() {
    let t = tenants();
    for (i, source) in [B, SYSTEM].into_iter().enumerate() {
        let name = format!("from-other-{i}");
        leaves_others_alone(t, || {
            let yaml = format!(
                "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: {name}\nspec:\n  source:\n    locations: [eu]\n    policy: app\n    namespace: {source}\n"
            );
            let msg = refused(t, &name, &yaml, "spec.source.namespace");
            assert!(msg.contains(&format!("namespace {A} does not grant {source}")), "{msg}");
        });
    }
    // Nor can a point of B's be named from A: A's catalog does not list it.
    let name = "b-point-by-name";
    let yaml = plan(name, &format!("  pointInTime:\n    type: Named\n    restorePoint: {}\n", t.points[2]));
    leaves_others_alone(t, || {
        as_team(&t.env, A, &["apply", "-f", "-"], Some(&yaml));
        let plans: Api<lifeline::api::RestorePlan> = Api::namespaced(t.env.client.clone(), A);
        let wanted = format!("eu: holds no restore point {}", t.points[2]);
        t.env.eventually(60, "the plan to find no such point", || async {
            let st = plans.get(name).await.ok()?.status?;
            assert!(st.phase != PlanPhase::Completed && st.volumes.is_empty(), "{st:?}");
            st.message?.contains(&wanted).then_some(())
        });
        as_team(&t.env, A, &["delete", "restoreplan", name, "--wait"], None);
    });
}

#[test]
fn a_drill_into_a_namespace_it_did_not_create_is_refused_and_deletes_nothing() {
    let t = tenants();
    // The administrator made a namespace named like A's default scratch namespace, with
    // something in it.
    let scratch = format!("{A}-drill");
    t.env.kubectl(&["create", "namespace", &scratch], None);
    t.env.kubectl(&["create", "configmap", "precious", "-n", &scratch, "--from-literal=keep=me"], None);
    for (i, target) in [B, scratch.as_str()].into_iter().enumerate() {
        let name = format!("drill-other-{i}");
        let extra = format!("  mode: Drill\n  target:\n    namespace: {target}\n");
        leaves_others_alone(t, || {
            let msg = refused(t, &name, &plan(&name, &extra), "spec.target.namespace");
            assert!(msg.contains("was not created by this drill"), "{msg}");
        });
    }
    // The default scratch namespace too, and it keeps what it held.
    let name = "drill-default";
    leaves_others_alone(t, || {
        refused(t, name, &plan(name, "  mode: Drill\n"), "spec.target.namespace");
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let kept = t.env.kubectl(&["get", "configmap", "precious", "-n", &scratch, "-o", "jsonpath={.data.keep}"], None);
    assert_eq!(kept, "me");
    let ns = t.env.kubectl(&["get", "namespace", &scratch, "-o", "jsonpath={.status.phase}"], None);
    assert_eq!(ns, "Active");
    // A system namespace as scratch is refused by the API server itself.
    let err = rejected(t, &plan("drill-system", &format!("  mode: Drill\n  target:\n    namespace: {SYSTEM}\n")));
    assert!(err.contains("spec.target.namespace") && err.contains("system namespace"), "{err}");
}

#[test]
fn a_policy_drilling_into_another_namespace_is_refused() {
    let t = tenants();
    // A second workload of A's, protected by a policy whose drills would use B.
    let spare = workload(A, "s3://unused/spare")
        .split("---\n")
        .filter(|d| d.contains("kind: StatefulSet"))
        .collect::<String>()
        .replace("name: app", "name: spare")
        .replace("app: app", "app: spare");
    let policy = |target: &str| {
        format!(
            "apiVersion: lifeline.io/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: spare}}\nspec:\n  protect: {{statefulSets: [spare]}}\n  schedule: \"0 0 1 1 *\"\n  rpo: 9000h\n  locations: [{{name: eu, role: Primary}}]\n  encryption: {{keySecret: {{name: repository-key, key: passphrase}}}}\n  retention: {{keepLast: 1}}\n  drill:\n    schedule: \"0 0 1 1 *\"\n    targetNamespace: {target}\n"
        )
    };
    leaves_others_alone(t, || {
        as_team(&t.env, A, &["apply", "-f", "-"], Some(&spare));
        as_team(&t.env, A, &["apply", "-f", "-"], Some(&policy(B)));
        let api: Api<lifeline::api::BackupPolicy> = Api::namespaced(t.env.client.clone(), A);
        let c = t.env.eventually(60, "the policy refused", || async {
            let p = api.get("spare").await.ok()?;
            p.status?.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.reason == "NotPermitted")
        });
        assert!(c.message.starts_with("spec.drill.targetNamespace: namespace tenant-b exists"), "{}", c.message);
        let events = t.env.event_messages(A, "NotPermitted");
        assert!(events.contains(&c.message), "{events}");
        // Nothing was snapshotted for it.
        let points = t.env.points(A);
        assert!(points.iter().all(|p| p.spec.policy != "spare"), "a run of the refused policy started");
    });
    let err = rejected(t, &policy(SYSTEM));
    assert!(err.contains("spec.drill.targetNamespace") && err.contains("system namespace"), "{err}");
}

#[test]
fn no_field_names_a_secret_or_location_of_another_namespace() {
    let t = tenants();
    // References are names in the object's own namespace: a namespace in one is not a
    // field, and the API server says so.
    let location = format!(
        "apiVersion: lifeline.io/v1alpha1\nkind: BackupLocation\nmetadata: {{name: other}}\nspec:\n  url: s3://lifeline/x\n  credentialsSecret: {{name: s3-credentials, namespace: {B}}}\n"
    );
    let err = rejected(t, &location);
    assert!(err.contains("unknown field") && err.contains("credentialsSecret.namespace"), "{err}");
    let policy = format!(
        "apiVersion: lifeline.io/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: other}}\nspec:\n  protect: {{statefulSets: [app]}}\n  schedule: \"0 0 1 1 *\"\n  rpo: 9000h\n  locations: [{{name: eu, namespace: {B}, role: Primary}}]\n  encryption: {{keySecret: {{name: repository-key, key: passphrase}}}}\n  retention: {{keepLast: 1}}\n"
    );
    let err = rejected(t, &policy);
    assert!(err.contains("unknown field") && err.contains("namespace"), "{err}");
    // And a team cannot read another's Secrets by itself.
    let (ok, _, err) = team(&t.env, A, &["get", "secret", "s3-credentials", "-n", B], None);
    assert!(!ok && err.contains("forbidden"), "{err}");
}

#[test]
fn a_location_without_credentials_does_not_borrow_the_operators_identity() {
    let t = tenants();
    // The bucket both teams were given, without naming the credentials: reached with the
    // operator's own cloud identity this would be a way around the Secret. Here no
    // namespace is in the operator's ambientCredentials, so the requests go unsigned, the
    // server refuses them, and the location says why.
    let (eu, _) = s3::regions();
    let location = format!(
        "apiVersion: lifeline.io/v1alpha1\nkind: BackupLocation\nmetadata: {{name: borrowed}}\nspec:\n  url: {}\n  endpoint: {}\n  forcePathStyle: true\n",
        t.url, eu.endpoint
    );
    as_team(&t.env, A, &["apply", "-f", "-"], Some(&location));
    let api: Api<BackupLocation> = Api::namespaced(t.env.client.clone(), A);
    let ready = t.env.eventually(60, "the location's check", || async {
        let st = api.get("borrowed").await.ok()?.status?;
        st.conditions.into_iter().find(|c| c.type_ == "Ready")
    });
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "PermissionDenied"), "{ready:?}");
    assert!(ready.message.contains("unsigned") && ready.message.contains("ambientCredentials"), "{}", ready.message);
    as_team(&t.env, A, &["delete", "backuplocation", "borrowed"], None);
}

#[test]
fn the_catalog_shows_a_namespace_only_its_own_points_unless_granted() {
    let t = tenants();
    let only_b = &t.points[2];
    // Both teams' locations read one bucket: A's catalog lists A's points only (the point
    // of the same name in A is A's own).
    let names = |ns: &str| t.env.points(ns).iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert!(!names(A).contains(only_b), "B's point listed in A: {:?}", names(A));
    let first = t.env.block_on(Api::<RestorePoint>::namespaced(t.env.client.clone(), A).get(&t.points[0])).unwrap();
    assert!(!first.annotations().contains_key("lifeline.io/source-namespace"), "A's own point taken for B's");
    // A third namespace with a location at the same bucket (checked every 2 s): it lists
    // nothing of B's until an administrator maps B's points into it.
    let c = "tenant-c";
    admit(&t.env, c);
    let docs = workload(c, &t.url);
    let location: Vec<&str> =
        docs.split("---\n").filter(|d| !d.contains("StatefulSet") && !d.contains("BackupPolicy")).collect();
    let location =
        location.join("---\n").replace("  forcePathStyle: true\n", "  forcePathStyle: true\n  checkInterval: 2s\n");
    as_team(&t.env, c, &["apply", "-f", "-"], Some(&location));
    let api: Api<RestorePoint> = Api::namespaced(t.env.client.clone(), c);
    let locations: Api<lifeline::api::BackupLocation> = Api::namespaced(t.env.client.clone(), c);
    t.env.eventually(60, "the location checked", || async {
        let st = locations.get("eu").await.ok()?.status?;
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(names(c).is_empty(), "the catalog of {c} lists {:?}", names(c));
    t.env.kubectl(&["annotate", "namespace", c, &format!("{ANNOTATION_GRANT}={B}")], None);
    let p = t.env.eventually(60, "B's point in the catalog", || async { api.get_opt(only_b).await.ok()? });
    assert_eq!(p.annotations().get("lifeline.io/source-namespace").map(String::as_str), Some(B));
    // The grant withdrawn: it goes again; B's own stays B's.
    t.env.kubectl(&["annotate", "namespace", c, &format!("{ANNOTATION_GRANT}-")], None);
    t.env.eventually(60, "B's point gone from the catalog", || async {
        api.get_opt(only_b).await.ok()?.is_none().then_some(())
    });
    assert!(names(B).contains(only_b), "B's own point is still B's");
}

#[test]
fn a_grant_lets_exactly_the_granted_restore_through_and_withdrawing_it_stops_the_next() {
    let t = tenants();
    let shared = "shared-staging";
    t.env.kubectl(&["create", "namespace", shared], None);
    let yaml = |token: &str| {
        plan(
            "to-staging",
            &format!(
                "  pointInTime:\n    type: Named\n    restorePoint: {}\n  target:\n    namespace: {shared}\n  trigger:\n    runToken: \"{token}\"\n",
                t.points[0]
            ),
        )
    };
    // Without a grant: refused.
    let msg = refused(t, "to-staging", &yaml("1"), "spec.target.namespace");
    assert!(msg.contains(&format!("namespace {shared} does not grant {A}")), "{msg}");
    // The administrator grants A: the same restore, run again, succeeds.
    t.env.kubectl(&["annotate", "namespace", shared, &format!("{ANNOTATION_GRANT}={A}")], None);
    as_team(&t.env, A, &["apply", "-f", "-"], Some(&yaml("2")));
    t.env.eventually(30, "the second run", || async {
        let api: Api<lifeline::api::RestorePlan> = Api::namespaced(t.env.client.clone(), A);
        (api.get("to-staging").await.ok()?.status?.run_token.as_deref() == Some("2")).then_some(())
    });
    t.env.completed_plan(A, "to-staging", 240);
    t.env.kubectl(&["rollout", "status", "statefulset/app", "-n", shared, "--timeout=90s"], None);
    let log = t.env.kubectl(&["exec", "-n", shared, "app-0", "--", "head", "-n", "1", "/data/log"], None);
    assert_eq!(log, format!("{A} record 1\n"));
    // Withdrawn: the next attempt is refused, and what the granted run made stays.
    t.env.kubectl(&["annotate", "namespace", shared, &format!("{ANNOTATION_GRANT}-")], None);
    as_team(&t.env, A, &["apply", "-f", "-"], Some(&yaml("3")));
    t.env.eventually(30, "the third run", || async {
        let api: Api<lifeline::api::RestorePlan> = Api::namespaced(t.env.client.clone(), A);
        let st = api.get("to-staging").await.ok()?.status?;
        (st.run_token.as_deref() == Some("3") && st.phase == PlanPhase::Failed).then_some(())
    });
    let st = t.env.finished_plan(A, "to-staging", 10);
    let degraded = st.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!(degraded.reason, "NotPermitted", "{degraded:?}");
    assert!(degraded.message.starts_with("spec.target.namespace: "), "{}", degraded.message);
    t.env.kubectl(&["get", "statefulset/app", "-n", shared], None);
}

#[test]
fn no_secret_value_reaches_restore_points_events_logs_or_metrics() {
    let t = tenants();
    let secrets = [PASSPHRASE.to_string(), s3::SECRET_KEY.to_string(), token(A), token(B)];
    let events = t.env.kubectl(&["get", "events", "-A", "-o", "json"], None);
    let points = t.env.kubectl(&["get", "restorepoints.lifeline.io", "-A", "-o", "json"], None);
    let metrics = t.env.metrics.as_ref().unwrap().encode();
    let logs = super::logs();
    assert!(points.contains(&t.points[0]) && metrics.contains("lifeline_") && !logs.is_empty());
    for s in &secrets {
        for (what, text) in [("Events", &events), ("RestorePoints", &points), ("metrics", &metrics), ("logs", &logs)] {
            assert!(!text.contains(s.as_str()), "a Secret's value is in the {what}");
        }
    }
}
