//! RPO down to a minute: a one-minute schedule on a small workload, over ten minutes of
//! the operator's clock. Every minute's run is taken, no run starts while the one before
//! is still running (a minute whose slot comes during a run is taken once it ends), and
//! the achieved RPO the policy reports stays within its target.

use jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupPolicy, RestorePoint};

const MINUTES: i64 = 10;

const POLICY: &str = r#"apiVersion: lifeline.io/v1alpha1
kind: BackupPolicy
metadata:
  name: records
  namespace: records
spec:
  protect:
    statefulSets: [records]
  schedule: "* * * * *"
  rpo: 2m
  locations:
    - name: eu
      role: Primary
  encryption:
    keySecret:
      name: records-repository-key
      key: passphrase
  retention:
    keepLast: 3
"#;

#[test]
fn a_one_minute_schedule_holds_its_rpo_for_ten_minutes() {
    let (env, _prefix, clock, start) = super::one_replica_on_a_clock("minute", POLICY);
    let points: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    let policies: Api<BackupPolicy> = Api::namespaced(env.client.clone(), "records");
    let minute = |t: Timestamp| Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60)).unwrap();
    let first = minute(start).checked_add(SignedDuration::from_mins(1)).unwrap();
    let mut worst = SignedDuration::ZERO;
    for m in 0..MINUTES {
        let slot = first.checked_add(SignedDuration::from_mins(m)).unwrap();
        clock.set(slot.checked_add(SignedDuration::from_secs(5)).unwrap());
        // Minute 4: the next slot comes while this run is still running.
        let name = env.eventually(60, &format!("the run of minute {m}"), || async {
            let list = points.list(&Default::default()).await.ok()?.items;
            let running = list
                .iter()
                .filter(|p| {
                    p.status.as_ref().is_none_or(|s| !matches!(s.phase, RunPhase::Completed | RunPhase::Failed))
                })
                .count();
            assert!(
                running <= 1,
                "two runs at once: {:?}",
                list.iter().map(kube::ResourceExt::name_any).collect::<Vec<_>>()
            );
            list.into_iter().find(|p| p.spec.scheduled_time.0 == slot).map(|p| kube::ResourceExt::name_any(&p))
        });
        if m == 4 {
            let next = slot.checked_add(SignedDuration::from_mins(1)).unwrap();
            clock.set(next.checked_add(SignedDuration::from_secs(2)).unwrap());
            std::thread::sleep(std::time::Duration::from_secs(2));
            let list = env.block_on(points.list(&Default::default())).unwrap().items;
            let this = list.iter().find(|p| kube::ResourceExt::name_any(*p) == name).unwrap();
            if this.status.as_ref().is_none_or(|s| s.phase != RunPhase::Completed) {
                assert!(
                    !list.iter().any(|p| p.spec.scheduled_time.0 == next),
                    "the next minute's run started while {name} was still running"
                );
            }
        }
        let st = env.finished_point("records", &name, 120).status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "minute {m}: {:?}", st.message);
        // Within the minute on a quiet machine; the deadline is for a loaded one, and a
        // miss shows what the policy said meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let s = env.block_on(policies.get("records")).ok().and_then(|p| p.status);
            if s.as_ref().and_then(|s| s.last_backup.as_ref()).is_some_and(|l| l.restore_point == name) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the policy did not count minute {m} ({name}): {s:#?}\nwarnings:\n{}",
                super::logs()
                    .lines()
                    .filter(|l| l.contains("WARN") && !l.contains("heartbeat"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if m == 4 {
            // The clock is already past this minute's end; setting it back would make the
            // next minute's run (it may have started) newer than "now".
            continue;
        }
        // The end of the minute, just before the next slot: the achieved RPO the policy
        // reports (the age of the newest point then) is within the target.
        clock.set(slot.checked_add(SignedDuration::from_secs(59)).unwrap());
        let rpo = env.eventually(30, &format!("the RPO at the end of minute {m}"), || async {
            let s = policies.get("records").await.ok()?.status?;
            let a = std::time::Duration::from(s.achieved_rpo?);
            (a >= std::time::Duration::from_secs(50)).then_some(s)
        });
        let achieved = SignedDuration::try_from(std::time::Duration::from(rpo.achieved_rpo.unwrap())).unwrap();
        worst = worst.max(achieved);
        let ready = rpo.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True", "minute {m}: {ready:?}");
        assert!(achieved <= SignedDuration::from_mins(2), "minute {m}: achieved RPO {achieved:?}");
    }
    println!("one-minute schedule: {MINUTES} runs, worst achieved RPO {worst:?} (target 2m)");
    let runs = env.points("records").len();
    assert!(runs >= 3, "{runs} restore points kept");
}
