//! `make demo` is part of the suite: the same command, asserting on the report it prints.
//! (It runs the operator for two clusters in one process and takes about 45 s.)

#[test]
fn the_demo_loses_the_primary_and_brings_every_record_back_in_the_standby() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["demo", "--points", "2"])
        .env_remove("LIFELINE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "primary cluster running, with the operator",
        "the primary cluster is lost",
        "standby cluster running; it knows only the locations and keeps a warm standby",
        "warm standby holds records-manual-",
        "refresh 2 wrote ",
        "heartbeat lost (region-a Silent, region-b Silent): the standby decided to fail over",
        "fencing: the primary's cluster skipped: the source cluster cannot be reached",
        "fencing markers written (region-a: epoch 1, region-b: epoch 1)",
        "every record up to the restore point is back (data-records-0: records 1..",
        "the primary comes back, finds the fencing marker and stands down",
        "RPO ",
        "RTO ",
        "= detection ",
        "DEMO PASSED",
    ] {
        assert!(stdout.contains(want), "{want:?} not in the report:\n{stdout}");
    }
    // Off a terminal: plain lines, no spinner. stderr holds at most the operators' log
    // records (JSON lines; a warning such as a slow heartbeat write on a loaded machine).
    assert!(!stdout.contains('\r') && !stdout.contains('\u{1b}'), "{stdout}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a log record on stderr: {line:?}"));
        assert!(record["level"] == "WARN" || record["level"] == "INFO", "{line}");
    }
    // The report's table: both points, the second deduplicated against the first.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("records-manual-")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let ratio = |row: &str| row.split_whitespace().last().unwrap().trim_end_matches('x').parse::<f64>().unwrap();
    assert!(ratio(rows[1]) > 100.0, "the second point stores only what changed: {}", rows[1]);
    // The warm and the cold recovery side by side: the warm one only scales up.
    let exec = |label: &str| -> f64 {
        let l =
            stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label}: {stdout}"));
        l.split_whitespace().last().unwrap().trim_end_matches('s').parse().unwrap()
    };
    let (cold, warm) = (exec("cold restore ("), exec("warm standby ("));
    assert!(warm < cold, "warm {warm} s, cold {cold} s:\n{stdout}");
    // It cleans up after itself.
    assert!(!std::env::temp_dir().join(format!("lifeline-demo-{pid}")).exists());
}
