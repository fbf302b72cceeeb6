//! The seam between a mover Job and the controller: the mover writes its typed result to
//! the container's termination message, and the controller reads it from the Pod's
//! status, without exec and without trusting the exit code alone.

use lifeline::mover::MoverResult;
use lifeline::sim::{Cluster, Options};

fn pod(name: &str, args: &[&str], env_password: &str, policy: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"restartPolicy": "Never", "containers": [{{"name": "mover", "image": "lifeline",
              "command": [{bin:?}], "args": [{args}], "terminationMessagePolicy": "{policy}",
              "env": [{{"name": "LIFELINE_PASSWORD", "value": "{env_password}"}}]}}]}}}}"#,
        bin = env!("CARGO_BIN_EXE_lifeline"),
        args = args.join(", ")
    )
}

#[test]
fn a_mover_result_travels_in_the_termination_message() {
    let cluster = Cluster::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kc).unwrap();
    let repo = format!("file://{}", dir.path().join("repo").display());
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
