//! The `lifeline` binary as users and the operator's data movers run it: JSON result on
//! stdout when not on a terminal, the same in `--result-file`, exit codes, and errors that
//! say what to do.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn lifeline(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeline"));
    cmd.args(args).env_remove("LIFELINE_PASSWORD");
    if let Some(p) = password {
        cmd.env("LIFELINE_PASSWORD", p);
    }
    cmd.output().expect("run lifeline")
}

fn result(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!("no JSON result on stdout ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

fn url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A restore that does not fit (here: a file-size limit smaller than a file) fails with
/// an error naming the file, and never reports success.
#[test]
fn a_restore_that_does_not_fit_fails_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = url(&tmp.path().join("repo"));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    assert!(lifeline(&["repo", "init", &repo], Some("pw")).status.success());
    assert!(lifeline(&["repo", "backup", &repo, src.to_str().unwrap()], Some("pw")).status.success());

    // At most 1 MiB per file (in 512-byte blocks). The signal that limit raises is
    // left as it is: lifeline ignores it itself, so that the write fails with EFBIG.
    let out_dir = tmp.path().join("out");
    let out = Command::new("sh")
        .args(["-c", "ulimit -f 2048; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_lifeline"))
        .args(["repo", "restore", &repo, "latest", out_dir.to_str().unwrap()])
        .env("LIFELINE_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(out.status.code().is_some_and(|c| c != 0), "{out:?}");
    let r = result(&out);
    assert_eq!(r["ok"], false, "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("big.bin") && message.contains("too large"), "{r}");
}

/// Many small files restore under a low limit of open files (60, soft and hard, and a
/// soft limit of 60 under a higher hard one): a restore holds its queued files open, and
/// used to fail with "Too many open files" under the common default of 1,024.
#[test]
fn many_small_files_restore_under_a_low_open_files_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = url(&tmp.path().join("repo"));
    let src = tmp.path().join("src");
    for d in 0..10 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            std::fs::write(src.join(format!("d{d}/f{f}.json")), format!("{{\"d\":{d},\"f\":{f}}}")).unwrap();
        }
    }
    assert!(lifeline(&["repo", "init", &repo], Some("pw")).status.success());
    assert!(lifeline(&["repo", "backup", &repo, src.to_str().unwrap()], Some("pw")).status.success());
    for (n, limit) in ["ulimit -n 60", "ulimit -Sn 60"].into_iter().enumerate() {
        let out_dir = tmp.path().join(format!("out{n}"));
        let out = Command::new("sh")
            .args(["-c", &format!("{limit}; exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_lifeline"))
            .args(["repo", "restore", &repo, "latest", out_dir.to_str().unwrap()])
            .env("LIFELINE_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(out.status.success(), "{limit}: {}", String::from_utf8_lossy(&out.stdout));
        for d in 0..10 {
            for f in 0..100 {
                let p = format!("d{d}/f{f}.json");
                assert_eq!(std::fs::read(out_dir.join(&p)).unwrap(), std::fs::read(src.join(&p)).unwrap(), "{p}");
            }
        }
    }
}

#[test]
fn backup_and_restore_report_json_and_write_the_result_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = url(&tmp.path().join("repo"));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();

    let init = lifeline(&["repo", "init", &repo], Some("pw"));
    assert!(init.status.success());
    assert_eq!(result(&init)["ok"], true);

    let result_file = tmp.path().join("result.json");
    let backup = lifeline(
        &[
            "repo",
            "backup",
            &repo,
            src.to_str().unwrap(),
            "--tag",
            "app=orders",
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        Some("pw"),
    );
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let r = result(&backup);
    assert_eq!(r["command"], "backup");
    assert_eq!(r["result"]["tags"]["app"], "orders");
    assert_eq!(r["result"]["summary"]["files"], 1);
    let from_file: Value = serde_json::from_slice(&std::fs::read(&result_file).unwrap()).unwrap();
    assert_eq!(from_file["result"]["id"], r["result"]["id"], "the result file says the same as stdout");

    let points = result(&lifeline(&["repo", "points", &repo], Some("pw")));
    assert_eq!(points["result"]["points"].as_array().unwrap().len(), 1);

    let out = tmp.path().join("out");
    let restore = lifeline(&["repo", "restore", &repo, "latest", out.to_str().unwrap()], Some("pw"));
    assert!(restore.status.success());
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"hello");

    // Not on a terminal: progress goes to stderr as JSON lines or not at all, never to stdout.
    assert_eq!(String::from_utf8_lossy(&restore.stdout).lines().count(), 1);
    assert!(result(&restore)["result"]["check"].is_null(), "no check unless asked");

    // --check reads it back and reports files, bytes and the volume digest.
    let checked = tmp.path().join("checked");
    let r = result(&lifeline(&["repo", "restore", &repo, "latest", checked.to_str().unwrap(), "--check"], Some("pw")));
    assert_eq!(r["ok"], true, "{r}");
    let c = &r["result"]["check"];
    assert_eq!((c["files"].as_u64(), c["bytes"].as_u64(), c["filesMatching"].as_u64()), (Some(1), Some(5), Some(1)));
    assert_eq!(c["digest"], c["foundDigest"]);
    assert_eq!(c["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn failures_exit_non_zero_with_a_category_and_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = url(&tmp.path().join("repo"));
    assert!(lifeline(&["repo", "init", &repo], Some("right")).status.success());

    let table = [
        (
            vec!["repo", "points", repo.as_str()],
            Some("wrong"),
            "WrongKey",
            "the passphrase the repository was created with",
        ),
        (vec!["repo", "points", repo.as_str()], None, "Error", "set LIFELINE_PASSWORD"),
        (vec!["repo", "points", "file:///nonexistent/lifeline"], Some("x"), "BucketMissing", "does not exist"),
        (vec!["repo", "init", repo.as_str()], Some("right"), "AlreadyInitialized", "already exists"),
        (
            vec!["repo", "restore", repo.as_str(), "deadbeef", "/tmp/x"],
            Some("right"),
            "NotFound",
            "list the restore points",
        ),
        (vec!["repo", "points", "ftp://example.com/x"], Some("x"), "InvalidLocation", "unsupported scheme"),
    ];
    for (args, password, category, advice) in table {
        let out = lifeline(&args, password);
        assert!(!out.status.success(), "{args:?} succeeded");
        let r = result(&out);
        assert_eq!(r["ok"], false, "{args:?}");
        assert_eq!(r["error"]["category"], category, "{args:?}: {r}");
        // What happened is the message; what to do is the hint (words that also fit a
        // Kubernetes Event, so no command lines in messages of the data path).
        let message = r["error"]["message"].as_str().unwrap_or_default();
        let hint = r["error"]["hint"].as_str().unwrap_or_default();
        assert!(format!("{message} {hint}").contains(advice), "{args:?}: {message} / {hint}");
        assert!(!message.contains("lifeline repo"), "{args:?}: {message}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(r#""level":"error""#), "{args:?}: the error is also on stderr: {stderr}");
    }
}

#[test]
fn verify_fails_the_process_when_data_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = url(&repo_dir);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
    assert!(lifeline(&["repo", "init", &repo], Some("pw")).status.success());
    assert!(lifeline(&["repo", "backup", &repo, src.to_str().unwrap()], Some("pw")).status.success());
    assert!(lifeline(&["repo", "verify", &repo], Some("pw")).status.success());

    let data =
        std::fs::read_dir(repo_dir.join("data")).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap());
    let pack = data.map(|e| e.unwrap().path()).max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let out = lifeline(&["repo", "verify", &repo], Some("pw"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("big"), "names the damaged file");
}

#[test]
fn crd_and_validate_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeline")).arg("crd").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 4);

    let ok = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["validate", "-f", crate::support::path("manifests/examples").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let bad = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args([
            "validate",
            "-f",
            crate::support::path("tests/fixtures/invalid/13-rpo-shorter-than-schedule.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("spec.rpo: Invalid value"));
}

/// Every stderr line off a terminal is a JSON object.
fn stderr_is_json_lines(out: &Output) {
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

/// Finding: argument errors exited 2 with only clap's usage text (no JSON result, no
/// result file); tracing lines were ANSI-coloured off a terminal; an unwritable result
/// file lost a successful backup's result; a failed verify said "(see above)".
#[test]
fn the_output_contract_holds_for_every_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = url(&tmp.path().join("repo"));
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), vec![7u8; 300_000]).unwrap();
    assert!(lifeline(&["repo", "init", &repo], Some("pw")).status.success());

    // Argument errors: exit 2, one JSON result, the result file too.
    let rf = tmp.path().join("args.json");
    let out = lifeline(&["repo", "backup", "--bogus", &repo, "--result-file", rf.to_str().unwrap()], Some("pw"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let r = result(&out);
    assert_eq!((r["ok"].as_bool(), r["error"]["category"].as_str()), (Some(false), Some("InvalidArgument")));
    assert!(r["error"]["message"].as_str().unwrap().contains("--bogus"));
    let from_file: Value = serde_json::from_slice(&std::fs::read(&rf).unwrap()).unwrap();
    assert_eq!(from_file, r);
    stderr_is_json_lines(&out);

    // Logs at every level are JSON lines, never coloured.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeline"));
    cmd.args(["repo", "backup", &repo, src.to_str().unwrap()])
        .env("LIFELINE_PASSWORD", "pw")
        .env("LIFELINE_LOG", "debug");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'), "ANSI escapes on stderr");
    stderr_is_json_lines(&out);

    // A result file that cannot be written: the result still reaches stdout, exit 14.
    let nowhere = tmp.path().join("no/such/dir/result.json");
    let out = lifeline(
        &["repo", "backup", &repo, src.to_str().unwrap(), "--result-file", nowhere.to_str().unwrap()],
        Some("pw"),
    );
    assert_eq!(out.status.code(), Some(14));
    assert_eq!(result(&out)["ok"], true, "the backup's result is not lost");
    assert!(!tmp.path().join("no").exists());

    // Distinct exit codes per category.
    assert_eq!(lifeline(&["repo", "points", &repo], Some("wrong")).status.code(), Some(3));
    assert_eq!(lifeline(&["repo", "restore", &repo, "ffffffff", "/tmp/x"], Some("pw")).status.code(), Some(6));
    let empty = url(&tmp.path().join("empty"));
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    assert_eq!(lifeline(&["repo", "points", &empty], Some("pw")).status.code(), Some(4));

    // A failed verify names the damaged restore point in its JSON result.
    let points = result(&lifeline(&["repo", "points", &repo], Some("pw")));
    let first = points["result"]["points"][0]["id"].as_str().unwrap().to_string();
    std::fs::write(tmp.path().join("repo/snapshots").join(&first), b"").unwrap();
    let out = lifeline(&["repo", "verify", &repo], Some("pw"));
    assert_eq!(out.status.code(), Some(8));
    let r = result(&out);
    assert_eq!(r["error"]["category"], "Corrupted");
    assert!(r["error"]["message"].as_str().unwrap().contains(&first[..8]), "{r}");
    assert_eq!(r["result"]["damagedPoints"][0]["key"], format!("snapshots/{first}"));
    stderr_is_json_lines(&out);

    // repair sets it aside; the other points stay, and verify is clean again.
    let out = lifeline(&["repo", "repair", &repo], Some("pw"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(result(&out)["result"]["pointsSetAside"][0]["key"], format!("snapshots/{first}"));
    assert!(tmp.path().join("repo/damaged/snapshots").join(&first).exists());
    assert!(lifeline(&["repo", "verify", &repo], Some("pw")).status.success());
    let left = result(&lifeline(&["repo", "points", &repo], Some("pw")));
    assert_eq!(left["result"]["points"].as_array().unwrap().len(), 1);
}

/// `repo ls` off a terminal: one JSON object, every file in it as the walk reached it;
/// a tree that cannot be read ends the listing with `ok` false and the error, still one
/// object, and a non-zero exit; the result file holds the same outcome.
#[test]
fn ls_lists_every_file_as_one_json_object_even_when_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = url(&dir);
    let src = tmp.path().join("src");
    for d in ["a", "b"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
        for i in 0..50 {
            std::fs::write(src.join(d).join(format!("f{i:02}")), format!("{d}{i}")).unwrap();
        }
    }
    assert!(lifeline(&["repo", "init", &repo], Some("pw")).status.success());
    assert!(lifeline(&["repo", "backup", &repo, src.to_str().unwrap()], Some("pw")).status.success());

    let file = tmp.path().join("result.json");
    let out = lifeline(&["repo", "ls", &repo, "latest", "--result-file", file.to_str().unwrap()], Some("pw"));
    assert!(out.status.success(), "{out:?}");
    let r = result(&out);
    assert_eq!((r["ok"].as_bool(), r["command"].as_str()), (Some(true), Some("ls")), "{r}");
    let files = r["result"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 102, "two directories and their 100 files");
    assert_eq!((&files[1]["path"], &files[1]["type"], &files[1]["size"]), (&"a/f00".into(), &"file".into(), &2.into()));
    assert!(files[1]["mode"].is_string());
    assert_eq!(r["result"]["restorePoint"].as_str().map(str::len), Some(64));
    let recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(recorded["ok"], true);

    // Trees and data gone: the point is still listed, its root tree is not.
    for e in crate::support::files_under(&dir.join("data")) {
        std::fs::remove_file(e).unwrap();
    }
    let out = lifeline(&["repo", "ls", &repo, "latest", "--result-file", file.to_str().unwrap()], Some("pw"));
    assert!(out.status.code().is_some_and(|c| c != 0), "{out:?}");
    let r = result(&out);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["result"]["files"].as_array().map(Vec::len), Some(0), "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or_default().contains("not found"), "{r}");
    let recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(recorded["ok"], false);
}
