//! Installation: the Helm chart (lint, render with defaults and with every feature on,
//! built-in kinds validated against the Kubernetes schemas, CRDs identical to `crds/`, bad
//! values refused by the schema; `helm install`, upgrade and uninstall are in
//! `operator::install`) and the image's Dockerfile (linted, and building the binary as `make release`
//! does). The tools (helm, kubernetes-validate, hadolint) are installed, pinned, by
//! `scripts/chart-tools.sh`.

use crate::support;
use lifeline::cli::manifests::read_documents;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding helm, kubernetes-validate, hadolint and their Python.
pub(crate) fn tools() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(support::path("scripts/chart-tools.sh"))
            .arg("install")
            .output()
            .expect("failed to run scripts/chart-tools.sh");
        assert!(out.status.success(), "installing the chart tools failed: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Runs a tool; returns (success, stdout, stderr).
pub(crate) fn run<S: AsRef<std::ffi::OsStr>>(tool: &str, args: &[S]) -> (bool, String, String) {
    let out = Command::new(tools().join(tool))
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("lifeline-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("lifeline-helm-config"))
        .output()
        .unwrap_or_else(|e| panic!("failed to run {tool}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn chart() -> String {
    support::path("charts/lifeline").display().to_string()
}

/// Every feature on: what a production install with monitoring turns on.
const ALL_ON: &[&str] = &[
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "clusterId=site-a",
    "--set",
    "mover.image=registry.example/lifeline:1",
    "--set",
    "imagePullSecrets[0].name=pull",
    "--set",
    "priorityClassName=system-cluster-critical",
    "--set",
    "nodeSelector.kubernetes\\.io/os=linux",
    "--set",
    "tolerations[0].key=dedicated",
    "--set",
    "tolerations[0].operator=Exists",
    "--set",
    "podAnnotations.team=platform",
    "--set",
    "logFormat=text",
    "--set",
    "watchNamespaces={shop,records}",
    "--set",
    "ambientCredentials={platform}",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
];

/// `helm template` into a file; its documents.
pub(crate) fn render(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Vec<Value>) {
    let mut args: Vec<String> =
        ["template", "lifeline", &chart(), "--namespace", "lifeline-system"].map(String::from).to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (ok, out, err) = run("helm", &args);
    assert!(ok, "helm template {extra:?}: {err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &out).unwrap();
    let docs = read_documents(&file).unwrap().into_iter().map(|d| d.value).collect();
    (dir, file, docs)
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap_or_default().to_string()).collect();
    k.sort();
    k.dedup();
    k
}

#[test]
fn the_chart_lints_and_renders_valid_manifests_with_defaults_and_with_every_feature_on() {
    for extra in [&[][..], ALL_ON] {
        let mut lint: Vec<String> = vec!["lint".into(), "--strict".into(), chart()];
        lint.extend(
            extra
                .iter()
                .filter(|a| !a.starts_with("--api-versions") && !a.contains("monitoring.coreos"))
                .map(|s| s.to_string()),
        );
        let (ok, out, err) = run("helm", &lint);
        assert!(ok, "helm lint {extra:?}: {out}{err}");

        let (_dir, file, docs) = render(extra);
        // Built-in kinds against the Kubernetes 1.33 schemas; the ServiceMonitor is not one.
        let builtin: Vec<&Value> =
            docs.iter().filter(|d| !d["apiVersion"].as_str().unwrap_or_default().contains("coreos")).collect();
        let only_builtin = file.with_file_name("builtin.yaml");
        let text: Vec<String> = builtin.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        std::fs::write(&only_builtin, text.join("\n---\n")).unwrap();
        let (ok, out, err) = run("kubernetes-validate", &["--strict", "-k", "1.33.0", only_builtin.to_str().unwrap()]);
        assert!(ok, "kubernetes-validate {extra:?}: {out}{err}");

        // Restricted Pod security, probes, leader election, least privilege.
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
        let pod = &dep["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let ambient = c["env"].as_array().into_iter().flatten().find(|e| e["name"] == "LIFELINE_AMBIENT_CREDENTIALS");
        assert_eq!(ambient.map(|e| &e["value"]), (!extra.is_empty()).then_some(&serde_json::json!("platform")));
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(dep["spec"]["replicas"], 2);
        assert!(c["args"].as_array().unwrap().iter().any(|a| a == "--leader-elect=true"), "{}", c["args"]);
        for role in docs.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs"] {
                    assert!(
                        !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                        "{} grants * in {field}: {rule}",
                        role["metadata"]["name"]
                    );
                }
            }
        }
        let monitored = kinds(&docs).contains(&"ServiceMonitor".to_string());
        assert_eq!(monitored, !extra.is_empty(), "the ServiceMonitor is rendered only when enabled and available");
    }
    // Enabled but without the Prometheus Operator's CRDs: no ServiceMonitor.
    let (_dir, _, docs) = render(&["--set", "serviceMonitor.enabled=true"]);
    assert!(!kinds(&docs).contains(&"ServiceMonitor".to_string()));
}

/// The chart's CRDs are those of `crds/`, with only Helm's keep annotation and the
/// chart's labels added; `crds.install=false` leaves them out.
#[test]
fn the_chart_installs_the_crds_of_crds_dir_and_keeps_them_on_uninstall() {
    let (_dir, _, docs) = render(&[]);
    let rendered: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
    let want = lifeline::api::crds();
    assert_eq!(rendered.len(), want.len());
    for crd in want {
        let name = crd.metadata.name.clone().unwrap();
        let got = rendered.iter().find(|d| d["metadata"]["name"] == name.as_str()).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{name}");
        assert_eq!(
            numbers_as_floats(got["spec"].clone()),
            numbers_as_floats(serde_json::to_value(&crd.spec).unwrap()),
            "{name}: the chart's copy differs"
        );
    }
    let (_dir, _, docs) = render(&["--set", "crds.install=false"]);
    assert!(!kinds(&docs).contains(&"CustomResourceDefinition".to_string()));
}

/// YAML round trips may write `36500.0` as `36500`: the same number.
fn numbers_as_floats(v: Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_floats(v))).collect()),
        other => other,
    }
}

#[test]
fn bad_values_are_refused_with_the_field_named() {
    let c = chart();
    for (set, field) in [
        ("replicaCount=two", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("heartbeatInterval=often", "/heartbeatInterval"),
        ("mover.concurrency=0", "/mover/concurrency"),
        ("metrics.port=70000", "/metrics/port"),
        ("watchNamespaces={Bad_Name}", "/watchNamespaces/0"),
        ("ambientCredentials={Bad_Name}", "/ambientCredentials/0"),
        ("imagePullPolicy=Always", "imagePullPolicy"),
    ] {
        let (ok, out, err) = run("helm", &["template", "lifeline", &c, "--set", set]);
        assert!(!ok, "{set} was accepted: {out}");
        assert!(err.contains(field), "{set}: the error does not name {field}: {err}");
    }
}

/// The image: hadolint finds nothing, it builds the binary exactly as `make release`
/// does, and it runs the binary the chart and the operator name.
#[test]
fn the_dockerfile_lints_and_builds_the_binary_as_make_release_does() {
    let dockerfile = support::path("Dockerfile");
    let (ok, out, err) = run("hadolint", &[dockerfile.to_str().unwrap()]);
    assert!(ok, "hadolint: {out}{err}");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let makefile = std::fs::read_to_string(support::path("Makefile")).unwrap();
    let recipe = makefile
        .split("\nrelease:\n")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("a release target in the Makefile")
        .trim()
        .replace("$(CARGO)", "cargo");
    assert!(text.contains(&format!("RUN {recipe}")), "the Dockerfile does not build with `{recipe}`");
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/lifeline\"]"));
    assert!(text.contains("USER 65532"), "the image runs as root");
    // The operator's default mover image is the chart's default image.
    let values = std::fs::read_to_string(support::path("charts/lifeline/values.yaml")).unwrap();
    let repo = values.lines().find_map(|l| l.trim().strip_prefix("repository: ")).unwrap().to_string();
    let default = lifeline::controller::Config::default().mover_image;
    assert_eq!(default.split(':').next().unwrap(), repo);
}

/// The Argo CD health checks, run in Lua 5.1 as Argo CD runs them, against objects taken
/// from operator runs (`manifests/argocd/resource_customizations/*/*/health_test.yaml`).
#[test]
fn argocd_health_checks_judge_real_objects_as_argocd_would() {
    let python = tools().join("python");
    let out = Command::new(python)
        .arg(support::path("scripts/argocd-health-test.py"))
        .arg(support::path("manifests/argocd/resource_customizations"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    println!("{text}");
    // Every kind is tried in every state it can be in.
    let states: &[(&str, &[&str])] = &[
        ("BackupLocation", &["Healthy", "Progressing", "Degraded"]),
        ("BackupPolicy", &["Healthy", "Progressing", "Degraded", "Suspended"]),
        ("RestorePoint", &["Healthy", "Progressing", "Degraded"]),
        ("RestorePlan", &["Healthy", "Progressing", "Degraded"]),
    ];
    for (kind, want) in states {
        for status in *want {
            let case =
                text.lines().any(|l| l.starts_with(&format!("ok   {kind}/")) && l.contains(&format!(": {status}: ")));
            assert!(case, "no {status} case for {kind}:\n{text}");
        }
    }
}

/// kustomize: `manifests/base` is the chart's default render (generated again here and
/// compared), both overlays render with `kubectl kustomize` into valid manifests naming
/// their site, and the primary's manifests bring the operator up from its Deployment on a
/// cluster that enforces RBAC.
#[test]
fn the_kustomize_base_is_the_charts_render_and_the_overlays_install() {
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(support::path("scripts/kustomize-base.sh")).arg(fresh.path()).output().unwrap();
    assert!(out.status.success(), "kustomize-base.sh: {}", String::from_utf8_lossy(&out.stderr));
    let base = support::path("manifests/base");
    let mut files = vec!["operator.yaml".to_string()];
    files.extend(
        std::fs::read_dir(base.join("crds")).unwrap().map(|e| format!("crds/{}", e.unwrap().file_name().display())),
    );
    assert_eq!(files.len(), 1 + lifeline::api::crds().len());
    for f in &files {
        assert!(
            std::fs::read(base.join(f)).unwrap() == std::fs::read(fresh.path().join(f)).unwrap(),
            "manifests/base/{f} differs from the chart's render: run `make manifests`"
        );
    }

    let mut primary = Vec::new();
    for site in ["primary", "standby"] {
        let out = Command::new("kubectl")
            .args(["kustomize", support::path(&format!("manifests/overlays/{site}")).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl kustomize {site}: {}", String::from_utf8_lossy(&out.stderr));
        let file = fresh.path().join(format!("{site}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        let (ok, o, e) = run("kubernetes-validate", &["--strict", "-k", "1.33.0", file.to_str().unwrap()]);
        assert!(ok, "kubernetes-validate {site}: {o}{e}");
        let docs: Vec<Value> = read_documents(&file).unwrap().into_iter().map(|d| d.value).collect();
        let crds = docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").count();
        assert_eq!(crds, lifeline::api::crds().len(), "{site}");
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
        let env = dep["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "LIFELINE_CLUSTER_ID" && e["value"] == site), "{site}: {env:?}");
        if site == "primary" {
            primary = docs;
        }
    }

    // One replica: the simulated node shares one network between Pods (operator::install).
    for d in primary.iter_mut().filter(|d| d["kind"] == "Deployment") {
        d["spec"]["replicas"] = serde_json::json!(1);
    }
    let image = lifeline::sim::Image::program(
        "ghcr.io/lifeline-dr/lifeline",
        std::path::Path::new(env!("CARGO_BIN_EXE_lifeline")),
    );
    let env = crate::operator::Env::start_without_crds(lifeline::sim::Options {
        rbac: true,
        images: vec![image],
        ..Default::default()
    });
    let text: Vec<String> = primary.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    env.kubectl(&["apply", "--server-side", "-f", "-"], Some(&text.join("\n---\n")));
    env.kubectl(&["-n", "lifeline-system", "rollout", "status", "deployment/lifeline", "--timeout=90s"], None);
    env.eventually(60, "the operator to lead", || async {
        let logs = env.kubectl(&["-n", "lifeline-system", "logs", "deployment/lifeline"], None);
        logs.contains("took the leader Lease").then_some(())
    });
}

/// Every `lifeline_…` series the alert rules and the dashboard query is one the operator
/// exports (the registry's metrics with their type suffixes, and those read from status
/// at each scrape), and every alert the operators of a DR system need is there.
#[test]
fn the_alerts_and_the_dashboard_use_only_exported_metrics() {
    let (_dir, _, docs) = render(ALL_ON);
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let mut exprs: Vec<String> = Vec::new();
    let mut alerts = Vec::new();
    for g in rule["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            exprs.push(r["expr"].as_str().unwrap().to_string());
            alerts.push(r["alert"].as_str().unwrap().to_string());
            for a in ["summary", "description", "runbook"] {
                assert!(r["annotations"][a].as_str().is_some_and(|t| t.len() > 20), "{}: no {a}", r["alert"]);
            }
        }
    }
    for want in [
        "LifelineRPOBreached",
        "LifelineBackupsFailing",
        "LifelineLocationUnreachable",
        "LifelineReplicaLagging",
        "LifelineDrillFailed",
        "LifelineDrillOverdue",
        "LifelineStandbyLagging",
        "LifelineFenced",
    ] {
        assert!(alerts.iter().any(|a| a == want), "no alert {want}: {alerts:?}");
    }
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "lifeline-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dash: Value = serde_json::from_str(cm["data"]["lifeline.json"].as_str().unwrap()).unwrap();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(support::path("charts/lifeline/files/dashboard.json")).unwrap())
            .unwrap();
    assert_eq!(dash, file);
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{}", panels.len());
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }

    let mut exported: Vec<String> =
        lifeline::telemetry::status::METRICS.iter().map(|(n, _)| format!("lifeline_{n}")).collect();
    // A family shows in the text once it has a series: one each.
    let m = lifeline::telemetry::Metrics::new();
    let l = lifeline::telemetry::Metrics::policy("ns", "p");
    m.backup_duration.get_or_create(&l).observe(1.0);
    m.location_reachable.get_or_create(&lifeline::telemetry::Metrics::location("ns", "l")).set(1);
    m.reconcile_errors.get_or_create(&lifeline::telemetry::Metrics::error("policy", "Transient")).inc();
    m.reconciles.get_or_create(&lifeline::telemetry::Metrics::controller("policy")).inc();
    m.status_writes.get_or_create(&lifeline::telemetry::Metrics::controller("policy")).inc();
    for line in m.encode().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => exported.push(format!("{name}_total")),
            "histogram" => exported.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
            _ => exported.push(name.to_string()),
        }
    }
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        assert_eq!(e.matches('(').count(), e.matches(')').count(), "unbalanced: {e}");
        let mut rest = e.as_str();
        while let Some(i) = rest.find("lifeline_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            used.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|u| !exported.contains(u)).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?} (exported: {exported:?})");
}
