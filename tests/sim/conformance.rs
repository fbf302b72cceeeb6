//! Replays the conformance kit (scenarios recorded from a real kube-apiserver) against
//! `Profile::Bare`: every step must pass. The kit's copy in `tests/conformance/` is used
//! unless the shared kit, which may hold newer recordings, sits next to the project.
//! `tests/sim/conformance-passing.txt` lists the steps, so a kit that lost or renamed
//! steps (or a run that silently skipped some) fails too. The kit runs on the Python of
//! the pinned test tools (`scripts/chart-tools.sh`), which has PyYAML.

use lifeline::sim::{Cluster, Options, Profile};
use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn conformance_kit_against_the_bare_profile() {
    replay(false);
}

/// The same steps with authentication and RBAC on: over HTTPS, as the admin.
#[test]
fn conformance_kit_against_the_bare_profile_with_rbac() {
    replay(true);
}

fn replay(rbac: bool) {
    let shared = crate::support::root().join("../shared/conformance");
    let kit = if shared.join("run.py").exists() { shared } else { crate::support::path("tests/conformance") };
    let cluster = Cluster::start(Options { profile: Profile::Bare, rbac, ..Default::default() })
        .expect("start the simulated cluster");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let scenarios: Vec<String> = std::fs::read_dir(kit.join("scenarios"))
        .expect("scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("scenarios/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    let out = Command::new(crate::chart::tools().join("python"))
        .arg("run.py")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--check", "golden"])
        .args(&scenarios)
        .current_dir(&kit)
        .output()
        .expect("run the conformance kit's run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let passed: BTreeSet<&str> = stdout.lines().filter_map(|l| l.strip_prefix("PASS ")).map(str::trim).collect();
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    assert!(failed.is_empty() && out.status.success(), "conformance steps failed:\n{}", failed.join("\n"));
    let expected = std::fs::read_to_string(crate::support::path("tests/sim/conformance-passing.txt")).unwrap();
    let missing: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty() && !passed.contains(l)).collect();
    assert!(missing.is_empty(), "steps that did not run:\n{}", missing.join("\n"));
}
