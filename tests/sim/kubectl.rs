//! Everyday kubectl commands against `lifeline sim` (profile `full`), each checked on what
//! kubectl prints or what the object becomes, as on a real cluster. One cluster serves
//! the module; each test works in its own namespace.

use lifeline::sim::{Cluster, Options};
use std::path::PathBuf;
use std::sync::OnceLock;

struct Shared {
    _cluster: Cluster,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let cluster = Cluster::start(Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).unwrap();
        Shared { _cluster: cluster, _dir: dir, kubeconfig }
    })
}

/// kubectl that must succeed; its stdout.
fn k(args: &[&str]) -> String {
    let (ok, out, err) = super::kubectl(&shared().kubeconfig, args, None);
    assert!(ok, "kubectl {} failed:\n{out}{err}", args.join(" "));
    out
}

/// kubectl that must fail; its stderr.
fn k_fails(args: &[&str]) -> String {
    let (ok, out, err) = super::kubectl(&shared().kubeconfig, args, None);
    assert!(!ok, "kubectl {} should have failed:\n{out}", args.join(" "));
    err
}

fn jsonpath(args: &[&str], path: &str) -> String {
    let arg = format!("-o=jsonpath={path}");
    let mut a = args.to_vec();
    a.push(&arg);
    k(&a)
}

/// kubectl's typed `create` commands send protobuf bodies (and never fall back to JSON).
#[test]
fn create_commands_send_protobuf_and_objects_are_what_kubectl_asked_for() {
    assert_eq!(k(&["create", "namespace", "pb"]).trim(), "namespace/pb created");
    assert_eq!(jsonpath(&["get", "ns", "pb"], "{.status.phase} {.spec.finalizers[0]}"), "Active kubernetes");
    k(&["-n", "pb", "create", "configmap", "c", "--from-literal=a=1", "--from-literal=b=two"]);
    assert_eq!(jsonpath(&["-n", "pb", "get", "cm", "c"], "{.data.a},{.data.b}"), "1,two");
    k(&["-n", "pb", "create", "secret", "generic", "s", "--from-literal=p=x"]);
    // Secret data travels as bytes and is stored base64-encoded, as in JSON.
    assert_eq!(jsonpath(&["-n", "pb", "get", "secret", "s"], "{.type} {.data.p}"), "Opaque eA==");
    k(&["-n", "pb", "create", "serviceaccount", "sa"]);
    assert_eq!(jsonpath(&["-n", "pb", "get", "sa", "sa"], "{.metadata.name}"), "sa");
    k(&["-n", "pb", "create", "job", "j", "--image=busybox", "--", "true"]);
    assert_eq!(
        jsonpath(&["-n", "pb", "get", "job", "j"], "{.spec.template.spec.containers[0].command} {.spec.backoffLimit}"),
        r#"["true"] 6"#
    );
    k(&["-n", "pb", "create", "deployment", "d", "--image=nginx", "--port=8080", "--replicas=2"]);
    assert_eq!(
        jsonpath(
            &["-n", "pb", "get", "deploy", "d"],
            "{.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "2 d 8080"
    );
    // A second create is refused as from JSON.
    let err = k_fails(&["-n", "pb", "create", "configmap", "c", "--from-literal=a=1"]);
    assert!(err.contains("AlreadyExists") || err.contains("already exists"), "{err}");
}

/// With RBAC on the cluster serves HTTPS (kubectl sends credentials only over TLS);
/// `auth can-i` (SelfSubjectAccessReview), `--as` impersonation, `create token`
/// (TokenRequest) and `auth whoami` (SelfSubjectReview) answer as a real cluster does.
#[test]
fn auth_can_i_tokens_and_impersonation_with_rbac_on() {
    let cluster = Cluster::start(Options { rbac: true, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();
    let run = |args: &[&str], stdin: Option<&str>| super::kubectl(&kc, args, stdin);
    let ok = |args: &[&str]| {
        let (ok, out, err) = run(args, None);
        assert!(ok, "kubectl {} failed:\n{out}{err}", args.join(" "));
        out
    };
    ok(&["create", "namespace", "app"]);
    ok(&["-n", "app", "create", "serviceaccount", "robot"]);
    ok(&["-n", "app", "create", "role", "reader", "--verb=get,list", "--resource=configmaps"]);
    ok(&["-n", "app", "create", "rolebinding", "robot-reads", "--role=reader", "--serviceaccount=app:robot"]);

    let robot = "--as=system:serviceaccount:app:robot";
    assert_eq!(ok(&["auth", "can-i", "create", "pods"]).trim(), "yes", "the admin may do anything");
    assert_eq!(ok(&["-n", "app", "auth", "can-i", "list", "configmaps", robot]).trim(), "yes");
    for denied in [["delete", "configmaps"], ["get", "secrets"]] {
        let (allowed, out, _) = run(&["-n", "app", "auth", "can-i", denied[0], denied[1], robot], None);
        assert!(!allowed && out.trim() == "no", "{denied:?}: {out}");
    }
    // Bound in `app` only.
    let (allowed, out, _) = run(&["-n", "default", "auth", "can-i", "list", "configmaps", robot], None);
    assert!(!allowed && out.trim() == "no", "{out}");

    // The review's reason names the binding, as the RBAC authorizer words it.
    let ssar = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "system:serviceaccount:app:robot",
                 "resourceAttributes": {"namespace": "app", "verb": "list", "resource": "configmaps"}}}"#;
    let (created, out, err) = run(&["create", "-f", "-", "-o", "jsonpath={.status}"], Some(ssar));
    assert!(created, "{err}");
    assert_eq!(
        out,
        r#"{"allowed":true,"reason":"RBAC: allowed by RoleBinding \"robot-reads/app\" of Role \"reader\" to ServiceAccount \"robot/app\""}"#
    );
    let neither = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}"#;
    let (created, _, err) = run(&["create", "-f", "-"], Some(neither));
    assert!(!created);
    assert!(
        // (kubectl words a 422 as `The <Kind> "<name>" is invalid: <causes>`)
        err.contains(r#"The SelfSubjectAccessReview "" is invalid: spec: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"#),
        "{err}"
    );

    // A requested token authenticates as the ServiceAccount, with its permissions.
    let token = ok(&["-n", "app", "create", "token", "robot"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let with_token = format!("--token={token}");
    let who = ok(&[&with_token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(who, "system:serviceaccount:app:robot");
    assert!(ok(&[&with_token, "-n", "app", "get", "configmaps", "-o", "name"]).contains("configmap/kube-root-ca.crt"));
    let (listed, _, err) = run(&[&with_token, "-n", "app", "get", "pods"], None);
    assert!(!listed);
    assert!(
        err.contains(r#"pods is forbidden: User "system:serviceaccount:app:robot" cannot list resource "pods" in API group "" in the namespace "app""#),
        "{err}"
    );
    let rules = ok(&[&with_token, "-n", "app", "auth", "can-i", "--list"]);
    assert!(rules.lines().any(|l| l.starts_with("configmaps") && l.contains("[get list]")), "{rules}");

    // A token for another audience, or too short-lived a request, is refused.
    let other = ok(&["-n", "app", "create", "token", "robot", "--audience=vault"]).trim().to_string();
    let (listed, _, err) = run(&[&format!("--token={other}"), "-n", "app", "get", "configmaps"], None);
    assert!(!listed && err.contains("Unauthorized"), "{err}");
    let (made, _, err) = run(&["-n", "app", "create", "token", "robot", "--duration=1m"], None);
    assert!(!made);
    assert!(
        err.contains(r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#),
        "{err}"
    );
    // A deleted ServiceAccount's tokens stop working.
    ok(&["-n", "app", "delete", "serviceaccount", "robot"]);
    let (listed, _, err) = run(&[&with_token, "-n", "app", "get", "configmaps"], None);
    assert!(!listed && err.contains("Unauthorized"), "{err}");
}
