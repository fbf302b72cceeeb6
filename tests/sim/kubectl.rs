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

fn k_stdin(args: &[&str], stdin: &str) -> String {
    let (ok, out, err) = super::kubectl(&shared().kubeconfig, args, Some(stdin));
    assert!(ok, "kubectl {} failed:\n{out}{err}", args.join(" "));
    out
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: everyday}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
";

/// The everyday commands: each checked on what kubectl prints or what the object becomes.
#[test]
fn everyday_commands_do_what_they_do_on_a_real_cluster() {
    let ns = ["-n", "everyday"];
    let with = |args: &[&str]| -> Vec<String> { ns.iter().chain(args).map(|s| s.to_string()).collect() };
    let k_ns = |args: &[&str]| {
        let a = with(args);
        k(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    k(&["create", "namespace", "everyday"]);

    // get / label / annotate / patch (all three types) / describe
    k_ns(&["create", "configmap", "c", "--from-literal=a=1"]);
    k_ns(&["label", "configmap", "c", "tier=web"]);
    k_ns(&["annotate", "configmap", "c", "note=hi"]);
    assert_eq!(k_ns(&["get", "configmap", "-l", "tier=web", "-o", "name"]).trim(), "configmap/c");
    k_ns(&["patch", "configmap", "c", "-p", r#"{"data":{"b":"2"}}"#]);
    k_ns(&["patch", "configmap", "c", "--type=merge", "-p", r#"{"data":{"c":"3"}}"#]);
    k_ns(&["patch", "configmap", "c", "--type=json", "-p", r#"[{"op":"remove","path":"/data/a"}]"#]);
    assert_eq!(k_ns(&["get", "configmap", "c", "-o", "jsonpath={.data}"]), r#"{"b":"2","c":"3"}"#);
    let described = k_ns(&["describe", "configmap", "c"]);
    assert!(described.contains("Labels:       tier=web") && described.contains("note: hi"), "{described}");

    // apply (client-side), diff, apply --server-side, rollout status, scale
    k_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("REPLICAS", "2"));
    let (same, out, err) =
        super::kubectl(&shared().kubeconfig, &["diff", "-f", "-"], Some(&DEPLOYMENT.replace("REPLICAS", "2")));
    assert!(same && out.is_empty(), "no difference expected: {out}{err}");
    let (same, out, _) =
        super::kubectl(&shared().kubeconfig, &["diff", "-f", "-"], Some(&DEPLOYMENT.replace("REPLICAS", "3")));
    assert!(!same && out.contains("-  replicas: 2") && out.contains("+  replicas: 3"), "{out}");
    let applied = k_stdin(&["apply", "--server-side", "-f", "-"], &DEPLOYMENT.replace("REPLICAS", "3"));
    assert_eq!(applied.trim(), "deployment.apps/web serverside-applied");
    let status = k_ns(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(status.contains(r#"deployment "web" successfully rolled out"#), "{status}");
    assert_eq!(k_ns(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]), "3");
    k_ns(&["scale", "deployment/web", "--replicas=1"]);
    k_ns(&["wait", "deployment/web", "--for=jsonpath={.status.replicas}=1", "--timeout=30s"]);
    assert_eq!(k_ns(&["get", "replicasets", "-l", "app=web", "-o", "jsonpath={.items[0].spec.replicas}"]), "1");
    // `kubectl get` prints the server's columns for built-in kinds.
    k_ns(&["wait", "deployment/web", "--for=jsonpath={.status.availableReplicas}=1", "--timeout=30s"]);
    let table = k_ns(&["get", "deployment", "web"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "1/1", "1", "1"], "{table}");

    // explain (the built-in kinds' OpenAPI)
    let explained = k(&["explain", "statefulset.spec"]);
    assert!(explained.contains("FIELD: spec <StatefulSetSpec>") && explained.contains("serviceName"), "{explained}");

    // run, wait, exec, cp, logs, delete --wait
    k_ns(&["run", "sh", "--image=busybox", "--command", "--", "sleep", "1000"]);
    k_ns(&["wait", "--for=condition=Ready", "pod/sh", "--timeout=30s"]);
    assert_eq!(k_ns(&["exec", "sh", "--", "echo", "hello"]), "hello\n");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied\n").unwrap();
    let remote = format!("sh:{}", dir.path().join("remote.txt").display());
    k_ns(&["cp", local.to_str().unwrap(), &remote]);
    let back = dir.path().join("back.txt");
    k_ns(&["cp", &remote, back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied\n");
    k_ns(&[
        "run",
        "once",
        "--image=busybox",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo out-line; echo err-line >&2",
    ]);
    k_ns(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/once", "--timeout=30s"]);
    assert_eq!(k_ns(&["logs", "once"]), "out-line\nerr-line\n");
    // port-forward: a local port joined to the Pod's (SPDY tunnelled over a WebSocket).
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (pod_port, local_port) = (free_port(), free_port());
    let server = format!("python3 -m http.server {pod_port} --bind 127.0.0.1");
    k_ns(&["run", "web", "--image=python", "--command", "--", "sh", "-c", &server]);
    k_ns(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    let mut forward = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&shared().kubeconfig)
        .args(["-n", "everyday", "port-forward", "pod/web", &format!("{local_port}:{pod_port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = || -> Option<String> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", local_port)).ok()?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out)
    };
    // The Pod is Ready once its process runs (it has no readiness probe), before Python
    // listens: on a busy machine that takes seconds.
    let mut answer = None;
    for _ in 0..600 {
        answer = get().filter(|a| a.starts_with("HTTP/1.0 200"));
        if answer.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = forward.kill();
    let _ = forward.wait();
    // The shared cluster outlives this test (it is never dropped): the server's process
    // goes with its Pod, not with the test binary.
    k_ns(&["delete", "pod", "web", "--wait=false"]);
    assert!(answer.is_some_and(|a| a.contains("Directory listing")), "no answer through the forwarded port");

    // run -i --rm: attach to the container's stdin and output, then the Pod goes.
    let out = k_stdin(
        &["-n", "everyday", "run", "-i", "--rm", "cat", "--image=busybox", "--restart=Never", "--command", "--", "cat"],
        "hello from stdin\n",
    );
    assert!(out.contains("hello from stdin") && out.contains(r#"pod "cat" deleted"#), "{out}");

    // debug: an ephemeral container in the running Pod, and a copy of the Pod.
    k_ns(&["debug", "sh", "--image=busybox", "-c", "dbg", "--profile=general", "--", "sh", "-c", "echo from-debug"]);
    k_ns(&[
        "wait",
        "pod/sh",
        "--for=jsonpath={.status.ephemeralContainerStatuses[0].state.terminated.reason}=Completed",
        "--timeout=30s",
    ]);
    assert_eq!(k_ns(&["logs", "sh", "-c", "dbg"]), "from-debug\n");
    let err =
        k_fails(&["-n", "everyday", "debug", "sh", "--image=busybox", "-c", "dbg", "--profile=general", "--", "true"]);
    assert!(err.contains(r#"existing ephemeral containers "dbg" may not be changed"#), "{err}");
    k_ns(&[
        "debug",
        "sh",
        "--image=busybox",
        "--copy-to=sh-copy",
        "--container=dbg2",
        "--profile=general",
        "--",
        "sleep",
        "60",
    ]);
    k_ns(&["wait", "--for=condition=Ready", "pod/sh-copy", "--timeout=30s"]);
    assert_eq!(k_ns(&["get", "pod", "sh-copy", "-o", "jsonpath={.spec.containers[*].name}"]), "sh dbg2");
    assert_eq!(k_ns(&["delete", "pod", "sh", "--wait", "--timeout=60s"]).trim(), r#"pod "sh" deleted"#);
    let err = k_fails(&["-n", "everyday", "get", "pod", "sh"]);
    assert!(err.contains(r#"pods "sh" not found"#), "{err}");

    // auth can-i (RBAC off: everything is allowed) and create token
    assert_eq!(k(&["auth", "can-i", "delete", "nodes"]).trim(), "yes");
    let token = k_ns(&["create", "token", "default"]);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
}

/// `kubectl get` prints the columns kube-apiserver's printers give each kind; Services get
/// a cluster IP and node ports from the cluster's ranges, and a taken one is refused.
#[test]
fn kubectl_get_prints_the_real_columns_and_services_get_addresses() {
    let header = |out: &str| -> Vec<String> {
        let line = out.lines().next().unwrap_or_default();
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
    };
    k(&["create", "namespace", "printing"]);
    // The API server's own Service holds the range's first address.
    assert_eq!(jsonpath(&["-n", "default", "get", "service", "kubernetes"], "{.spec.clusterIP}"), "10.96.0.1");
    let ns = |args: &[&str]| -> Vec<String> { ["-n", "printing"].iter().chain(args).map(|s| s.to_string()).collect() };
    let k_ns = |args: &[&str]| k(&ns(args).iter().map(String::as_str).collect::<Vec<_>>());

    k_ns(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = jsonpath(&["-n", "printing", "get", "service", "web"], "{.spec.clusterIP}");
    assert!(ip.starts_with("10.") && ip.parse::<std::net::Ipv4Addr>().is_ok(), "a cluster IP from 10.96.0.0/12: {ip}");
    assert_eq!(
        jsonpath(&["-n", "printing", "get", "service", "web"], "{.spec.clusterIPs[0]} {.spec.ipFamilyPolicy}"),
        format!("{ip} SingleStack")
    );
    let table = k_ns(&["get", "service", "web", "-o", "wide"]);
    assert_eq!(header(&table), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row[..5], ["web", "ClusterIP", ip.as_str(), "<none>", "80/TCP"], "{table}");
    k_ns(&["create", "service", "nodeport", "edge", "--tcp=80:8080", "--node-port=30123"]);
    let err = k_fails(
        &ns(&["create", "service", "nodeport", "edge2", "--tcp=80:8080", "--node-port=30123"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("spec.ports[0].nodePort: Invalid value: 30123: provided port is already allocated"), "{err}");
    let err = k_fails(
        &ns(&["create", "service", "clusterip", "same", "--tcp=80", &format!("--clusterip={ip}")])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains(&format!("failed to allocate IP {ip}: provided IP is already allocated")), "{err}");
    let err = k_fails(
        &ns(&["create", "service", "clusterip", "bad", "--tcp=80", "--clusterip=10.96.0.300"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains(r#"spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address"#), "{err}");
    // A replace that leaves the cluster IP out keeps it.
    let mut svc: serde_json::Value = serde_json::from_str(&k_ns(&["get", "service", "web", "-o", "json"])).unwrap();
    svc["spec"].as_object_mut().unwrap().retain(|k, _| !k.starts_with("clusterIP"));
    svc["metadata"]["labels"]["replaced"] = serde_json::json!("yes");
    k_stdin(&["replace", "-f", "-"], &svc.to_string());
    assert_eq!(
        jsonpath(&["-n", "printing", "get", "service", "web"], "{.spec.clusterIP} {.metadata.labels.replaced}"),
        format!("{ip} yes")
    );

    // Events: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
    k_ns(&["run", "p", "--image=busybox", "--restart=Never", "--command", "--", "true"]);
    k_ns(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/p", "--timeout=30s"]);
    let events = k_ns(&["get", "events", "--field-selector", "involvedObject.name=p"]);
    assert_eq!(header(&events), ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{events}");
    assert!(events.lines().any(|l| l.contains("Normal") && l.contains("Scheduled") && l.contains("pod/p")), "{events}");
    let pods = k_ns(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        "{pods}"
    );
    assert!(pods.lines().any(|l| l.starts_with("p ") && l.contains("Completed")), "{pods}");
    // A custom resource's columns: JSONPath filters pick the Ready condition.
    k_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.printing.example.com}
spec:
  group: printing.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
        - {name: Reason, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].reason'}
        - {name: Size, type: integer, jsonPath: .spec.size}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
            status:
              type: object
              properties:
                conditions:
                  type: array
                  items: {type: object, properties: {type: {type: string}, status: {type: string}, reason: {type: string}}}
"#,
    );
    k(&["wait", "--for=condition=established", "crd/gadgets.printing.example.com", "--timeout=30s"]);
    k_stdin(
        &["apply", "-f", "-"],
        "apiVersion: printing.example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: printing}\nspec: {size: 3}\n",
    );
    k_ns(&[
        "patch",
        "gadget",
        "g",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Progressing","status":"False"},{"type":"Ready","status":"True","reason":"Done"}]}}"#,
    ]);
    let gadgets = k_ns(&["get", "gadgets"]);
    assert_eq!(header(&gadgets), ["NAME", "READY", "REASON", "SIZE"], "{gadgets}");
    let row: Vec<&str> = gadgets.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row, ["g", "True", "Done", "3"], "{gadgets}");
    // Kinds without a printer (ClusterRoles, CustomResourceDefinitions) show the creation time.
    for kind in ["clusterroles", "customresourcedefinitions"] {
        let out = k(&["get", kind]);
        assert_eq!(header(&out), ["NAME", "CREATED AT"], "{out}");
        let created = out.lines().nth(1).unwrap_or_default().split_whitespace().last().unwrap_or_default().to_string();
        assert!(created.parse::<jiff::Timestamp>().is_ok(), "an RFC 3339 time: {out}");
    }
}
