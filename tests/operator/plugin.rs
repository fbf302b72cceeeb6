//! `kubectl lifeline`: the binary installed as `kubectl-lifeline` on `PATH`, run by the real
//! kubectl against a simulated cluster with the operator: status, an on-demand backup,
//! restore points, a restore followed on a pseudo-terminal (its live display) and with
//! `-o json`, describe as a story, kubectl's flags, and clear errors.

use super::Env;
use serde_json::Value;
use std::process::Command;

struct Plugin {
    path: String,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

impl Plugin {
    /// `kubectl-lifeline` (a link to the binary) in a directory put first on `PATH`.
    fn install(env: &Env) -> Plugin {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lifeline"), dir.path().join("kubectl-lifeline")).unwrap();
        let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
        Plugin { path, kubeconfig: env.kubeconfig.display().to_string(), _dir: dir }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", &self.path).env("KUBECONFIG", &self.kubeconfig).env_remove("LIFELINE_LOG");
        c
    }

    /// `kubectl lifeline ARGS`: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let o = self.cmd("kubectl").arg("lifeline").args(args).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl lifeline {args:?}: {err}{out}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl lifeline {args:?}: {e}: {out}"))
    }

    /// ARGS run on a pseudo-terminal (`script`): everything it drew, and its success.
    fn on_terminal(&self, args: &[&str]) -> (bool, String) {
        let line = std::iter::once("kubectl lifeline").chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
        let o = self.cmd("script").args(["-q", "-e", "-c", &line, "/dev/null"]).env("COLUMNS", "120").output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into())
    }
}

#[test]
fn kubectl_lifeline_shows_backs_up_lists_restores_and_describes() {
    let (env, _prefix) = super::records_one_replica("plugin");
    let k = Plugin::install(&env);

    // An on-demand backup, followed to its end.
    let out = k.ok(&["-n", "records", "backup", "now", "records", "--wait"]);
    let point = out
        .lines()
        .find_map(|l| l.strip_prefix("restorepoint/")?.strip_suffix(" requested"))
        .unwrap_or_else(|| panic!("no point named: {out}"))
        .to_string();
    assert!(out.lines().last().is_some_and(|l| l.starts_with("Completed")), "{out}");
    assert!(out.contains("Uploading: "), "the steps were not followed: {out}");

    // Restore points, as a kubectl List.
    let list = k.json(&["points", "records", "-n", "records", "-o", "json"]);
    assert_eq!(list["kind"], "List");
    let p = list["items"].as_array().unwrap().iter().find(|p| p["metadata"]["name"] == point.as_str()).unwrap();
    assert_eq!(p["status"]["phase"], "Completed");
    let table = k.ok(&["points", "-n", "records"]);
    assert!(table.starts_with("NAME") && table.contains(&point) && table.contains("Completed"), "{table}");

    // Status: the policy's RPO target and achieved, last backup, locations.
    let status = k.json(&["status", "-A", "-o", "json"]);
    let policy = status["policies"].as_array().unwrap().iter().find(|p| p["name"] == "records").unwrap();
    assert_eq!(policy["namespace"], "records");
    assert_eq!(policy["rpoTargetSeconds"], 9000 * 3600, "the tests' copy of the example: 9000h");
    assert!(policy["rpoAchievedSeconds"].as_u64().is_some_and(|a| a < 600), "{policy}");
    assert_eq!(policy["rpoBreached"], false);
    assert_eq!(policy["lastBackup"]["restorePoint"], point.as_str());
    let locs: Vec<&str> = policy["locations"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(locs, ["eu", "us"]);
    let wide = k.ok(&["status", "-n", "records", "-o", "wide"]);
    for col in ["POLICY", "RPO", "ACHIEVED", "LAST BACKUP", "NEXT", "LOCATIONS", "LAST DRILL", "PROTECTED"] {
        assert!(wide.lines().next().unwrap().contains(col), "{col}: {wide}");
    }
    assert!(wide.contains("375d") && wide.contains("eu:"), "{wide}");

    // A restore into a new namespace, followed on a terminal: the live display, then RPO and RTO.
    let (ok, drawn) = k.on_terminal(&["-n", "records", "restore", "records", "--to-namespace", "records-copy"]);
    assert!(ok, "{drawn}");
    for shown in ["restoreplan/records-restore-", "data-records-0", "Completed", "RPO:", "RTO:", "execution"] {
        assert!(drawn.contains(shown), "the terminal did not show {shown:?}: {drawn}");
    }
    assert!(drawn.contains('\r') || drawn.contains("\u{1b}["), "no live redraws on the terminal: {drawn:?}");
    let plan =
        drawn.split("restoreplan/").nth(1).and_then(|s| s.split([':', ' ', '\r', '\n']).next()).unwrap().to_string();
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records-copy", "--timeout=60s"], None);

    // The same through a pipe with -o json: the finished plan.
    let drill = k.json(&["-n", "records", "drill", "records", "-o", "json"]);
    assert_eq!(drill["kind"], "RestorePlan");
    assert_eq!(drill["status"]["phase"], "Completed", "{}", drill["status"]);
    assert!(drill["status"]["rto"]["total"].is_string(), "{}", drill["status"]);

    // Describe: conditions, steps and the Events as a story.
    let story = k.ok(&["describe", &format!("restoreplan/{plan}"), "-n", "records"]);
    for part in
        ["Kind:       RestorePlan", "Conditions:", "Steps:", "volume data-records-0", "Events:", "RestoreCompleted"]
    {
        assert!(story.contains(part), "describe lacks {part:?}: {story}");
    }
    let at = |r: &str| story.find(r).unwrap_or_else(|| panic!("{r}: {story}"));
    assert!(at("RestoreStarted") < at("VolumesRestored") && at("VolumesRestored") < at("RestoreCompleted"), "{story}");
    let yaml = k.ok(&["describe", "bp/records", "-n", "records", "-o", "yaml"]);
    assert!(yaml.contains("kind: BackupPolicy"), "{yaml}");

    // Argo CD re-syncing the plan from Git (the same spec, its tracking label added, then
    // changed) restores nothing twice: the plan is reconciled and stays as it was.
    let get = || -> Value {
        serde_json::from_str(
            &env.kubectl(&["get", &format!("restoreplan/{plan}"), "-n", "records", "-o", "json"], None),
        )
        .unwrap()
    };
    let before = get();
    let jobs = || env.kubectl(&["get", "jobs", "-n", "records", "-o", "name"], None);
    let jobs_before = jobs();
    let reconciles = || env.metric("reconciles_total", &[("controller", "restore-plan")]).unwrap_or(0.0);
    for app in ["dr", "dr-2"] {
        let seen = reconciles();
        let manifest = serde_json::json!({
            "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePlan",
            "metadata": {"name": plan, "namespace": "records", "labels": {"app.kubernetes.io/instance": app}},
            "spec": before["spec"],
        });
        env.apply(&manifest.to_string());
        // A second reconcile starting means the one before it ended (one at a time per object).
        env.eventually(30, "the re-synced plan to be reconciled", || async { (reconciles() > seen).then_some(()) });
    }
    let after = get();
    assert_eq!(after["status"], before["status"], "a re-sync changed the finished plan's status");
    assert_eq!(jobs(), jobs_before, "a re-sync started mover Jobs");
    assert_eq!(env.event_messages("records", "RestoreStarted").matches("into namespace records-copy").count(), 1);

    // kubectl's flags: the context by name; a wrong one, a wrong kind and a missing
    // policy are refused with the reason.
    let ctx = env.kubectl(&["config", "current-context"], None);
    k.ok(&["status", "--context", ctx.trim(), "-n", "records"]);
    let (ok, _, err) = k.run(&["status", "--context", "nowhere"]);
    assert!(!ok && err.contains("nowhere"), "{err}");
    let (ok, _, err) = k.run(&["describe", "pod/x", "-n", "records"]);
    assert!(!ok && err.contains("not a Lifeline kind"), "{err}");
    let (ok, _, err) = k.run(&["backup", "now", "missing", "-n", "records"]);
    assert!(!ok && err.contains("BackupPolicy \"missing\" not found in namespace records"), "{err}");
}
