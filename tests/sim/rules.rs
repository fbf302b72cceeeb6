//! Rules of the real API server beyond the recorded kit, each written from the real
//! server's source (named per test), checked over plain HTTP against `Profile::Bare`.

use lifeline::sim::{Cluster, Options, Profile};
use serde_json::{Value, json};
use std::io::{Read, Write};

struct Http {
    port: u16,
}

impl Http {
    /// One request; (status, body as JSON or as a string).
    fn call(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: rules-test/1.0\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap();
        let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body =
            if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.into() };
        (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }
    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, "application/json", "")
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, "application/json", &body.to_string())
    }
    fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, "application/json", "")
    }
    fn apply(&self, path: &str, manager: &str, body: Value, force: bool) -> (u16, Value) {
        let q = if force { "&force=true" } else { "" };
        self.call(
            "PATCH",
            &format!("{path}?fieldManager={manager}{q}"),
            "application/apply-patch+yaml",
            &body.to_string(),
        )
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn start() -> (Cluster, Http) {
    let cluster = Cluster::start(Options { profile: Profile::Bare, ..Default::default() }).unwrap();
    let http = Http { port: cluster.port() };
    (cluster, http)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

const ROUTES_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "gateways.rules.example.io"},
  "spec": {"group": "rules.example.io", "scope": "Namespaced",
    "names": {"plural": "gateways", "singular": "gateway", "kind": "Gateway"},
    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
      "type": "object", "properties": {"spec": {"type": "object", "properties": {
        "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                   "items": {"type": "object", "required": ["name"], "properties": {
                     "name": {"type": "string"}, "port": {"type": "integer"}}}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "hosts": {"type": "array", "items": {"type": "string"}}}}}}}}]}
}"#;

fn gateway(spec: Value) -> Value {
    json!({"apiVersion": "rules.example.io/v1", "kind": "Gateway", "metadata": {"name": "gw"}, "spec": spec})
}

/// Server-side apply on a custom resource follows its schema's list types
/// (structured-merge-diff `typed/merge.go`, `fieldpath/element.go`): a `map` list is
/// owned and merged item by item, a `set` value by value, a list without a type is
/// atomic.
#[test]
fn server_side_apply_honours_list_types_of_custom_resources() {
    let (_cluster, http) = start();
    let (code, crd) =
        http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", serde_json::from_str(ROUTES_CRD).unwrap());
    assert_eq!(code, 201, "{crd}");
    wait_for("the CRD to be served", || http.get("/apis/rules.example.io/v1/namespaces/default/gateways").0 == 200);
    let gw = "/apis/rules.example.io/v1/namespaces/default/gateways/gw";

    // Two managers apply different items of a map list: both succeed, both items stay.
    let (code, out) =
        http.apply(gw, "alpha", gateway(json!({"routes": [{"name": "web", "port": 80}], "tags": ["a"]})), false);
    assert_eq!(code, 201, "{out}");
    let (code, out) =
        http.apply(gw, "beta", gateway(json!({"routes": [{"name": "api", "port": 90}], "tags": ["b"]})), false);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["routes"], json!([{"name": "web", "port": 80}, {"name": "api", "port": 90}]));
    assert_eq!(out["spec"]["tags"], json!(["a", "b"]), "a set merges value by value");
    let fields = |out: &Value, manager: &str| {
        out["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == manager).unwrap()["fieldsV1"].clone()
    };
    assert_eq!(
        fields(&out, "beta")["f:spec"],
        json!({"f:routes": {"k:{\"name\":\"api\"}": {".": {}, "f:name": {}, "f:port": {}}}, "f:tags": {"v:\"b\"": {}}})
    );

    // A conflict on one item names that item.
    let (code, out) = http.apply(
        gw,
        "beta",
        gateway(json!({"routes": [{"name": "api", "port": 90}, {"name": "web", "port": 81}]})),
        false,
    );
    assert_eq!(code, 409, "{out}");
    assert_eq!(out["message"], r#"Apply failed with 1 conflict: conflict with "alpha": .spec.routes[name="web"].port"#);
    assert_eq!(out["details"]["causes"][0]["field"], r#".spec.routes[name="web"].port"#);
    // Forced, the field changes hands.
    let (code, out) = http.apply(
        gw,
        "beta",
        gateway(json!({"routes": [{"name": "api", "port": 90}, {"name": "web", "port": 81}]})),
        true,
    );
    assert_eq!(code, 200, "{out}");
    // Items both sides have follow the applied order (`visitListItems`).
    assert_eq!(out["spec"]["routes"], json!([{"name": "api", "port": 90}, {"name": "web", "port": 81}]));
    assert!(fields(&out, "alpha")["f:spec"]["f:routes"]["k:{\"name\":\"web\"}"].get("f:port").is_none());

    // A list without a list type is atomic: another manager's different value conflicts.
    let (code, out) =
        http.apply(gw, "alpha", gateway(json!({"routes": [{"name": "web", "port": 81}], "hosts": ["h1"]})), false);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["hosts"], json!(["h1"]));
    // Each manager's tag went when it stopped applying it; the emptied list goes too.
    assert!(out["spec"].get("tags").is_none(), "{out}");
    let (code, out) = http.apply(gw, "gamma", gateway(json!({"hosts": ["h2"]})), false);
    assert_eq!(code, 409, "{out}");
    assert_eq!(out["details"]["causes"][0]["field"], ".spec.hosts");

    // An item its only manager stops applying is removed; shared ones stay.
    let (code, out) = http.apply(gw, "beta", gateway(json!({"routes": [{"name": "web", "port": 81}]})), false);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["routes"], json!([{"name": "web", "port": 81}]));

    // Duplicate keys in an applied configuration are refused (not a Status error: 500).
    let (code, out) = http.apply(
        gw,
        "beta",
        gateway(json!({"routes": [{"name": "web", "port": 1}, {"name": "web", "port": 2}]})),
        false,
    );
    assert_eq!(code, 500, "{out}");
    assert_eq!(
        out["message"],
        r#"failed to create typed patch object (default/gw; rules.example.io/v1, Kind=Gateway): .spec.routes: duplicate entries for key [name="web"]"#
    );
}

/// Orphan deletion (apiserver `pkg/registry/generic/registry/store.go`
/// `deletionFinalizersForGarbageCollection`, `markAsDeleting`; the garbage collector's
/// owner-reference patch): the owner gets the `orphan` finalizer and a deletion
/// timestamp, its dependents lose their reference to it and stay.
#[test]
fn an_orphan_delete_leaves_dependents_without_the_owner_reference() {
    let (_cluster, http) = start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, owner) = http.post(cms, json!({"metadata": {"name": "owner"}}));
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "00000000-0000-0000-0000-000000000001"});
    let mine = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid});
    http.post(cms, json!({"metadata": {"name": "only", "ownerReferences": [mine]}, "data": {"k": "v"}}));
    http.post(cms, json!({"metadata": {"name": "two", "ownerReferences": [mine, other]}}));

    let (code, out) = http.delete(&format!("{cms}/owner?propagationPolicy=Orphan"));
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["metadata"]["finalizers"], json!(["orphan"]));
    assert_eq!(out["metadata"]["deletionGracePeriodSeconds"], 0);
    wait_for("the owner to go", || http.get(&format!("{cms}/owner")).0 == 404);
    let (_, only) = http.get(&format!("{cms}/only"));
    assert!(only["metadata"].get("ownerReferences").is_none(), "{only}");
    assert_eq!(only["data"]["k"], "v");
    let fields = only["metadata"]["managedFields"][0]["fieldsV1"].clone();
    assert!(fields["f:metadata"].is_null(), "the removed reference is no one's field: {fields}");
    let (_, two) = http.get(&format!("{cms}/two"));
    assert_eq!(two["metadata"]["ownerReferences"], json!([other]));

    // A batch/v1 Job orphans its Pods by default (pkg/registry/batch/job/strategy.go
    // DefaultGarbageCollectionPolicy), as `kubectl delete` avoids by asking Background.
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    let (code, out) = http.post(
        jobs,
        json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
               "containers": [{"name": "c", "image": "x"}]}}}}),
    );
    assert_eq!(code, 201, "{out}");
    let pods = "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dj";
    wait_for("the Job's Pod", || http.get(pods).1["items"].as_array().is_some_and(|a| !a.is_empty()));
    let (code, out) = http.delete(&format!("{jobs}/j"));
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["metadata"]["finalizers"], json!(["orphan"]), "{out}");
    wait_for("the Job to go", || http.get(&format!("{jobs}/j")).0 == 404);
    let (_, left) = http.get(pods);
    let pod = &left["items"][0];
    assert!(pod["metadata"].get("ownerReferences").is_none(), "the Pod stays, orphaned: {pod}");

    // Conflicting or unknown options are refused (ValidateDeleteOptions).
    let (code, out) = http.delete(&format!("{cms}/two?propagationPolicy=Orphan&orphanDependents=true"));
    assert_eq!(code, 422);
    assert_eq!(
        out["message"],
        r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set"#
    );
    let (code, out) = http.delete(&format!("{cms}/two?propagationPolicy=Sideways"));
    assert_eq!(code, 422);
    assert_eq!(
        out["message"],
        r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil""#
    );
}

/// Dry run (apiserver `pkg/registry/generic/registry/dryrun.go`, apimachinery
/// `ValidateDryRun`): the response is what would have been stored, with no
/// resourceVersion; nothing is stored; only `All` is accepted.
#[test]
fn a_dry_run_create_stores_nothing_and_returns_no_resource_version() {
    let (_cluster, http) = start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, out) = http.post(&format!("{cms}?dryRun=All"), json!({"metadata": {"name": "dry"}, "data": {"a": "b"}}));
    assert_eq!(code, 201, "{out}");
    assert!(out["metadata"].get("resourceVersion").is_none(), "{out}");
    assert!(out["metadata"]["uid"].is_string() && out["metadata"]["creationTimestamp"].is_string());
    assert_eq!(out["data"]["a"], "b");
    assert_eq!(http.get(&format!("{cms}/dry")).0, 404);
    let (_, list) = http.get(cms);
    assert!(list["items"].as_array().unwrap().iter().all(|i| i["metadata"]["name"] != "dry"));

    let (code, out) = http.post(&format!("{cms}?dryRun=Bogus"), json!({"metadata": {"name": "dry"}}));
    assert_eq!(code, 422);
    assert_eq!(
        out["message"],
        r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Bogus"]: supported values: "All""#
    );

    // A dry-run update or patch answers with the stored resourceVersion and changes nothing.
    let (_, kept) = http.post(cms, json!({"metadata": {"name": "kept"}, "data": {"v": "1"}}));
    let rv = kept["metadata"]["resourceVersion"].clone();
    let (code, out) = http.call(
        "PUT",
        &format!("{cms}/kept?dryRun=All"),
        "application/json",
        &json!({"metadata": {"name": "kept"}, "data": {"v": "2"}}).to_string(),
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!((out["metadata"]["resourceVersion"].clone(), out["data"]["v"].clone()), (rv.clone(), json!("2")));
    let (code, out) =
        http.call("PATCH", &format!("{cms}/kept?dryRun=All"), "application/merge-patch+json", r#"{"data":{"v":"3"}}"#);
    assert_eq!((code, out["metadata"]["resourceVersion"].clone()), (200, rv.clone()));
    assert_eq!(http.get(&format!("{cms}/kept")).1["data"]["v"], "1");

    // A dry-run delete answers as a delete would and keeps the object.
    let (code, _) = http.delete(&format!("{cms}/kept?dryRun=All"));
    assert_eq!(code, 200);
    assert_eq!(http.get(&format!("{cms}/kept")).0, 200);
}

/// List resource-version semantics (apiserver `pkg/storage/cacher`, `etcd3/store.go`
/// GetList; apimachinery `ValidateListOptions`): `Exact` lists the state at that version,
/// a continue token pages through one snapshot, and bad combinations are a 422.
#[test]
fn resource_version_match_exact_lists_the_older_state() {
    let (_cluster, http) = start();
    let cms = "/api/v1/namespaces/default/configmaps";
    http.post(cms, json!({"metadata": {"name": "a"}, "data": {"v": "1"}}));
    http.post(cms, json!({"metadata": {"name": "b"}, "data": {"v": "1"}}));
    let (_, before) = http.get(cms);
    let rv = before["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    http.call("PATCH", &format!("{cms}/a"), "application/merge-patch+json", r#"{"data":{"v":"2"}}"#);
    http.delete(&format!("{cms}/b"));
    http.post(cms, json!({"metadata": {"name": "c"}}));

    let (code, old) = http.get(&format!("{cms}?resourceVersion={rv}&resourceVersionMatch=Exact"));
    assert_eq!(code, 200, "{old}");
    assert_eq!(old["metadata"]["resourceVersion"], rv.as_str());
    let names: Vec<(&str, &str)> = old["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["data"]["v"].is_string())
        .map(|i| (i["metadata"]["name"].as_str().unwrap(), i["data"]["v"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("a", "1"), ("b", "1")]);
    let (_, now) = http.get(&format!("{cms}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"));
    assert!(now["items"].as_array().unwrap().iter().any(|i| i["metadata"]["name"] == "c"));

    // Paging is one snapshot: a page after a change still shows the first page's state.
    let (_, page1) = http.get(&format!("{cms}?limit=1"));
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    http.delete(&format!("{cms}/c"));
    let (_, page2) = http.get(&format!("{cms}?limit=10&continue={token}"));
    assert!(page2["items"].as_array().unwrap().iter().any(|i| i["metadata"]["name"] == "c"), "{page2}");
    assert_eq!(page2["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);

    // A state the server has not reached yet: 504 with the ResourceVersionTooLarge cause.
    let (code, out) = http.get(&format!("{cms}?resourceVersion=999999&resourceVersionMatch=NotOlderThan"));
    assert_eq!((code, out["reason"].as_str()), (504, Some("Timeout")), "{out}");
    assert!(
        out["message"].as_str().unwrap().starts_with("Timeout: Too large resource version: 999999, current: "),
        "{out}"
    );
    assert_eq!(out["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");

    for (query, message) in [
        (
            "resourceVersionMatch=Exact",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            r#"resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0""#,
        ),
        (
            &format!("resourceVersion={rv}&resourceVersionMatch=Newest") as &str,
            r#"resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#,
        ),
        (
            &format!("resourceVersionMatch=NotOlderThan&resourceVersion={rv}&continue={token}") as &str,
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
        ),
    ] {
        let (code, out) = http.get(&format!("{cms}?{query}"));
        assert_eq!(code, 422, "{query}: {out}");
        assert_eq!(out["message"], format!(r#"ListOptions.meta.k8s.io "" is invalid: {message}"#), "{query}");
    }
}

fn deployment(spec_pod: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}}, "spec": spec_pod}}})
}

/// Built-in kinds merge as their Go types' markers say (`+listType`, `+listMapKey`,
/// `+mapType=atomic`, else a `merge` patch strategy on the patch merge key; read from
/// the upstream generated.proto files): env items by name, volume mounts by mount path,
/// tolerations and node selectors as a whole.
#[test]
fn server_side_apply_on_built_ins_follows_their_markers() {
    let (_cluster, http) = start();
    let d = "/apis/apps/v1/namespaces/default/deployments/d";
    let (code, out) = http.apply(
        d,
        "alpha",
        deployment(json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}],
                                          "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
                          "volumes": [{"name": "v", "emptyDir": {}}],
                          "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"disk": "ssd"}})),
        false,
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = http.apply(
        d,
        "beta",
        deployment(json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "B", "value": "2"}]}]})),
        false,
    );
    assert_eq!(code, 200, "{out}");
    let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(*env, json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    let alpha = out["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "alpha").unwrap();
    let c = &alpha["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
    assert!(c["f:volumeMounts"].get("k:{\"mountPath\":\"/data\"}").is_some(), "{c}");
    let pod = &alpha["fieldsV1"]["f:spec"]["f:template"]["f:spec"];
    assert_eq!(pod["f:tolerations"], json!({}), "an atomic list is one leaf: {pod}");
    assert_eq!(pod["f:nodeSelector"], json!({}), "an atomic map is one leaf: {pod}");

    // Different values for an atomic list conflict as a whole.
    let (code, out) = http.apply(
        d,
        "beta",
        deployment(json!({"containers": [{"name": "c", "image": "x"}], "tolerations": []})),
        false,
    );
    assert_eq!(code, 409, "{out}");
    assert_eq!(out["details"]["causes"][0]["field"], ".spec.template.spec.tolerations");
}

/// A strategic merge patch merges each list on its type's patch merge key
/// (`+patchMergeKey`): a Service's ports by `port`, a container's volume mounts by
/// `mountPath`; a list without a merge strategy is replaced.
#[test]
fn strategic_merge_patch_uses_each_types_merge_key() {
    let (_cluster, http) = start();
    let svcs = "/api/v1/namespaces/default/services";
    let (code, out) = http.post(
        svcs,
        json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "x"},
               "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = http.call(
        "PATCH",
        &format!("{svcs}/s"),
        "application/strategic-merge-patch+json",
        r#"{"spec":{"ports":[{"port":443,"targetPort":8443}]}}"#,
    );
    assert_eq!(code, 200, "{out}");
    let ports: Vec<(i64, i64)> = out["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_i64().unwrap(), p["targetPort"].as_i64().unwrap_or(p["port"].as_i64().unwrap())))
        .collect();
    assert_eq!(ports, [(80, 80), (443, 8443)]);

    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let (code, out) = http.post(
        deploys,
        deployment(json!({"containers": [{"name": "c", "image": "x", "args": ["a", "b"],
                          "volumeMounts": [{"name": "v", "mountPath": "/one"}]}],
                          "volumes": [{"name": "v", "emptyDir": {}}]})),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = http.call(
        "PATCH",
        &format!("{deploys}/d"),
        "application/strategic-merge-patch+json",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","args":["z"],"volumeMounts":[{"name":"v","mountPath":"/two"}]}]}}}}"#,
    );
    assert_eq!(code, 200, "{out}");
    let c = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], json!(["z"]), "args have no merge strategy: replaced");
    let mounts: Vec<&str> =
        c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert_eq!(mounts, ["/two", "/one"], "merged by mountPath, patch items first");
}
