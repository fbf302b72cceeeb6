//! The seam between a mover Job and the controller: the mover writes its typed result to
//! the container's termination message, and the controller reads it from the Pod's
//! status, without exec and without trusting the exit code alone.

use lifeline::mover::MoverResult;
use lifeline::sim::{Cluster, Options};

fn pod(name: &str, args: &[&str], env_password: &str, policy: &str) -> String {
    pod_with(name, args, env_password, policy, "")
}

fn pod_with(name: &str, args: &[&str], env_password: &str, policy: &str, extra_env: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"restartPolicy": "Never", "containers": [{{"name": "mover", "image": "lifeline",
              "command": [{bin:?}], "args": [{args}], "terminationMessagePolicy": "{policy}",
              "env": [{{"name": "LIFELINE_PASSWORD", "value": "{env_password}"}}{extra_env}]}}]}}}}"#,
        bin = env!("CARGO_BIN_EXE_lifeline"),
        args = args.join(", ")
    )
}

/// A simulated cluster, a directory with its kubeconfig, and a `file://` repository URL in it.
fn cluster() -> (Cluster, tempfile::TempDir, std::path::PathBuf, String) {
    let cluster = Cluster::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();
    let repo = format!("file://{}", dir.path().join("repo").display());
    (cluster, dir, kc, repo)
}

#[test]
fn a_mover_result_travels_in_the_termination_message() {
    let (_cluster, _dir, kc, repo) = cluster();
    let run = |name: &str, args: &[&str], password: &str, policy: &str| -> (String, String) {
        let (ok, _, err) = crate::sim::kubectl(&kc, &["apply", "-f", "-"], Some(&pod(name, args, password, policy)));
        assert!(ok, "{err}");
        let (ok, _, err) = crate::sim::kubectl(
            &kc,
            &[
                "wait",
                &format!("pod/{name}"),
                "--for=jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
                "--timeout=60s",
            ],
            None,
        );
        assert!(ok, "{err}");
        let get = |path: &str| {
            let (_, out, _) = crate::sim::kubectl(&kc, &["get", "pod", name, "-o", &format!("jsonpath={path}")], None);
            out
        };
        (
            get("{.status.containerStatuses[0].state.terminated.message}"),
            get("{.status.containerStatuses[0].state.terminated.exitCode}"),
        )
    };

    let (message, code) = run("init", &["repo", "init", &repo, "--result-file", "/dev/termination-log"], "pw", "File");
    let r = MoverResult::parse(&message).unwrap();
    assert!(r.ok && r.command == "init" && code == "0", "{message}");

    // A failure: the result says why, with what to do; the exit code agrees.
    let (message, code) = run("again", &["repo", "init", &repo, "--result-file", "/dev/termination-log"], "pw", "File");
    let e = MoverResult::parse(&message).unwrap().error.unwrap();
    assert_eq!((e.category.as_str(), code.as_str()), ("AlreadyInitialized", "5"));
    assert!(!e.hint.is_empty());

    // A mover that died before writing a result: its log's end, which is never taken
    // for a result.
    let (message, code) = run("died", &["repo", "points", &repo], "wrong", "FallbackToLogsOnError");
    assert_eq!(code, "3");
    assert!(message.contains("wrong key"), "{message}");
    assert!(MoverResult::parse(&message).is_err(), "{message}");
}

/// The operator follows a running mover through the JSON progress lines in its log: the
/// lines a real mover writes there parse, and count up to the volume's size.
#[test]
fn a_mover_reports_progress_in_its_log() {
    let (_cluster, dir, kc, repo) = cluster();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut seed = 7u64;
    let size = 64usize << 20;
    for f in 0..4 {
        let bytes: Vec<u8> = (0..size / 4)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        std::fs::write(data.join(format!("f{f}")), bytes).unwrap();
    }
    let env = r#", {"name": "LIFELINE_PROGRESS_INTERVAL", "value": "10ms"}"#;
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["repo", "init", &repo])
        .env("LIFELINE_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let args = ["repo", "backup", &repo, data.to_str().unwrap(), "--result-file", "/dev/termination-log"];
    let (ok, _, err) =
        crate::sim::kubectl(&kc, &["apply", "-f", "-"], Some(&pod_with("mover", &args, "pw", "File", env)));
    assert!(ok, "{err}");
    let (ok, _, err) = crate::sim::kubectl(
        &kc,
        &[
            "wait",
            "pod/mover",
            "--for=jsonpath={.status.containerStatuses[0].state.terminated.exitCode}=0",
            "--timeout=120s",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, log, _) = crate::sim::kubectl(&kc, &["logs", "mover"], None);
    let (done, total) =
        lifeline::controller::movers::last_progress(&log).unwrap_or_else(|| panic!("no progress in {log}"));
    assert!(done > 0 && done <= total && total <= size as i64, "{done} of {total}: {log}");
}
