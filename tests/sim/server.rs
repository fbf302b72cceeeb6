//! The simulated API server's own behaviour, written from the real server's documented
//! behaviour (TESTING.md §4), checked through plain HTTP and through `kubectl`.

use super::kubectl;
use lifeline::sim::{Cluster, Options, Profile};
use std::process::Command;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              max: {type: integer, default: 10}
            x-kubernetes-validations:
            - rule: self.size <= self.max
              message: size must not exceed max
"#;

#[test]
fn kubectl_applies_gets_waits_and_deletes() {
    let cluster = Cluster::start(Options { profile: Profile::Bare, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();

    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(CRD));
    assert!(ok, "apply of the CRD failed: {out}{err}");
    let (ok, out, err) =
        kubectl(&kc, &["wait", "--for=condition=established", "--timeout=20s", "crd/widgets.example.io"], None);
    assert!(ok, "wait failed: {out}{err}");

    let widget = "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n";
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(widget));
    assert!(ok, "apply of a Widget failed: {out}{err}");
    let (ok, out, err) = kubectl(&kc, &["get", "widget", "w1", "-o", "yaml"], None);
    assert!(ok, "get failed: {err}");
    assert!(out.contains("max: 10"), "the schema default was not applied:\n{out}");

    // Bad input is refused with the field named, as the real server does.
    let bad = "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n";
    let (ok, _, err) = kubectl(&kc, &["apply", "-f", "-"], Some(bad));
    assert!(
        !ok && err.contains("spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        "{err}"
    );
    let cel = "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 20}\n";
    let (ok, _, err) = kubectl(&kc, &["apply", "-f", "-"], Some(cel));
    assert!(!ok && err.contains("size must not exceed max"), "{err}");

    let (ok, out, err) = kubectl(&kc, &["delete", "widget", "w1"], None);
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let (ok, _, err) = kubectl(&kc, &["get", "widget", "w1"], None);
    assert!(!ok && (err.contains("NotFound") || err.contains("not found")), "{err}");
}

#[test]
fn two_clusters_side_by_side_and_one_killed() {
    let a = Cluster::start(Options::default()).unwrap();
    let mut b = Cluster::start(Options::default()).unwrap();
    let get = |url: &str| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{url}/api/v1/namespaces/default")])
            .output()
            .unwrap()
    };
    assert_eq!(String::from_utf8_lossy(&get(&a.url()).stdout), "200");
    assert_eq!(String::from_utf8_lossy(&get(&b.url()).stdout), "200");
    b.kill();
    assert_eq!(String::from_utf8_lossy(&get(&b.url()).stdout), "000", "a killed cluster must not answer");
    assert_eq!(String::from_utf8_lossy(&get(&a.url()).stdout), "200", "the other cluster must keep serving");
}
