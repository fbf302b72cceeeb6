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
