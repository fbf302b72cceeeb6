//! Copies of older restore points: replication follows the newest point, and a copy of an
//! older one that is still running when a newer point completes is finished all the same:
//! recorded at the replica and its Job removed.

use crate::support::s3;
use kube::api::Api;
use lifeline::api::RestorePoint;
use lifeline::api::restore_point::RunPhase;
use std::time::{Duration, Instant};

/// The first `lifeline replicate` process copying from `from` that starts within `secs`,
/// stopped (`SIGSTOP`) as soon as it is seen: its pid and the restore point it copies.
fn stop_first_copy(from: String, secs: u64) -> std::thread::JoinHandle<Option<(i32, String)>> {
    let binary = env!("CARGO_BIN_EXE_lifeline").to_string();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
                let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
                let args: Vec<String> =
                    cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                // `lifeline mover --result-file FILE replicate FROM TO --point NAME ...`
                let copies = args.first() == Some(&binary)
                    && args.iter().position(|a| a == "replicate").is_some_and(|i| args.get(i + 1) == Some(&from));
                if !copies {
                    continue;
                }
                // SAFETY: a plain signal to a process of this test's cluster.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                let point = args.iter().skip_while(|a| *a != "--point").nth(1).cloned().unwrap_or_default();
                return Some((pid, point));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    })
}

#[test]
fn a_copy_of_an_older_point_that_outlives_a_newer_run_is_recorded_and_removed() {
    let (mut env, prefix) = super::records_one_replica("older-copy");
    let stopper = stop_first_copy(format!("s3://lifeline/{prefix}-eu"), 180);

    env.kubectl(&["annotate", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=one"], None);
    let one = env.new_point("records", &[], 60);
    assert_eq!(env.finished_point("records", &one, 120).status.unwrap().phase, RunPhase::Completed);
    // Its copy to the second region, held mid-way.
    let (pid, copying) = stopper.join().unwrap().expect("no copy of the first point started");
    assert_eq!(copying, one);

    // A newer point completes and is copied while the older copy still runs.
    env.kubectl(&["annotate", "--overwrite", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=two"], None);
    let two = env.new_point("records", std::slice::from_ref(&one), 60);
    assert_eq!(env.finished_point("records", &two, 120).status.unwrap().phase, RunPhase::Completed);
    let api: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    let present = |name: String| {
        let api = api.clone();
        async move {
            let p = api.get_opt(&name).await.ok()??;
            p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
        }
    };
    env.eventually(120, "the newer point in the second region", || present(two.clone()));
    let older_job = lifeline::controller::restore_point::names::replication(&one, 0);
    let jobs = env.kubectl(&["get", "jobs", "-n", "records", "-o", "name"], None);
    assert!(jobs.contains(&older_job), "the older copy's Job is gone while it still runs: {jobs}");

    // The older copy goes on and finishes: recorded at the replica, its Job removed.
    // SAFETY: the process this test stopped.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    env.eventually(120, "the older point recorded in the second region", || present(one.clone()));
    super::backup::assert_no_children(&env, "records");
    let (_, us) = s3::regions();
    let records = super::crash::records_at(&format!("s3://lifeline/{prefix}-us"), &us.endpoint);
    assert_eq!((records.get(&one), records.get(&two)), (Some(&1), Some(&1)), "{records:?}");
    env.kill_operator();
}
