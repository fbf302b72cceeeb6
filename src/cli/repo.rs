//! `lifeline repo …`: the standalone data-path CLI. It needs no cluster.
//!
//! The key comes from `LIFELINE_PASSWORD`, `--password-file` or `--key-file` (raw key).
//! On a terminal it draws progress bars; otherwise it prints JSON-lines progress on
//! stderr. Every command ends with a JSON result on stdout when not on a terminal (or
//! with `--json`), and in `--result-file` if given: the operator reads that file and never
//! trusts an exit code alone.

use crate::mover::{MoverError, MoverResult};
use crate::repo::backup::{self, BackupOptions};
use crate::repo::format::{Id, Node, NodeKind, Snapshot};
use crate::repo::prune::{self, Retention};
use crate::repo::restore::{self, RestoreOptions};
use crate::repo::{RepoError, Repository, Secret, copy, keys, source, verify};
use crate::store::{self, Backend, LocationOptions, Metered, Retrying};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// File holding the repository passphrase (instead of LIFELINE_PASSWORD).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// File holding a raw key (for machines), instead of a passphrase.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Print the final result as JSON even on a terminal.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the final JSON result to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub result_file: Option<PathBuf>,
    /// S3-compatible endpoint (also LIFELINE_S3_ENDPOINT).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a repository at a location.
    Init { url: String },
    /// Back up a directory (or a block device / image file).
    Backup {
        url: String,
        path: PathBuf,
        /// Tag the restore point (`key=value`), repeatable.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Parent restore point (default: the newest of the same host and path).
        #[arg(long, conflicts_with = "parent_tag")]
        parent: Option<String>,
        /// Parent: the newest restore point carrying this tag (`KEY=VALUE`), if any. For
        /// runs whose path differs every time (a volume cloned from a snapshot).
        #[arg(long, value_name = "KEY=VALUE")]
        parent_tag: Option<String>,
        /// Host name to record (default: this host).
        #[arg(long)]
        host: Option<String>,
        /// Fail when a file or directory vanishes or cannot be read during the backup
        /// (by default it is left out, and counted and named in the result).
        #[arg(long)]
        strict: bool,
    },
    /// Restore a restore point (or `latest`) into an empty directory or an image file, or
    /// (`--in-place`) bring an existing one to the point's state.
    Restore {
        url: String,
        point: String,
        target: PathBuf,
        /// Restore only this path (relative to the restore point), repeatable.
        #[arg(long = "include", value_name = "PATH")]
        include: Vec<String>,
        /// Restore into a non-empty target, replacing files.
        #[arg(long)]
        overwrite: bool,
        /// Bring an existing directory or image to exactly the restore point's state,
        /// writing only what differs: files with the recorded size and modification time
        /// are left alone, others are compared chunk by chunk and only differing chunks
        /// are written; what the point does not have is deleted.
        #[arg(long, conflicts_with = "overwrite")]
        in_place: bool,
        /// Write files of 1 MiB or more with O_DIRECT. By default every file goes
        /// through the page cache, and what a restore wrote is dropped from it once
        /// written back (it takes a few dozen MiB of the node's memory, not gigabytes);
        /// either way the final filesystem sync makes the data durable before the
        /// restore reports success.
        #[arg(long)]
        direct_io: bool,
        /// Every file through the page cache: the default (kept for scripts that pass it).
        #[arg(long, hide = true, conflicts_with = "direct_io")]
        page_cache: bool,
        /// Then read everything back and check it against the restore point (files,
        /// bytes, content, a digest of the whole): fail if they differ.
        #[arg(long)]
        check: bool,
    },
    /// List restore points.
    Points { url: String },
    /// List the files of a restore point.
    Ls { url: String, point: String },
    /// Re-read stored data, decrypt and re-hash it; name what a bad chunk affects.
    Verify {
        url: String,
        /// Percentage of data packs to read (metadata is always read in full).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        sample: u32,
    },
    /// Rebuild the index from the packs, set damaged restore points aside and move used
    /// blobs out of damaged packs. Never deletes pack data.
    Repair { url: String },
    /// Remove restore points by retention rules (the union of all rules is kept).
    Forget {
        url: String,
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        keep_hourly: Option<u32>,
        #[arg(long)]
        keep_daily: Option<u32>,
        #[arg(long)]
        keep_weekly: Option<u32>,
        #[arg(long)]
        keep_monthly: Option<u32>,
        #[arg(long)]
        keep_yearly: Option<u32>,
        /// Keep everything younger than this (`168h`, `90m`).
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<String>,
        /// Show what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Prune afterwards.
        #[arg(long)]
        prune: bool,
        /// Grace period of the prune (see `prune`).
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
    },
    /// Delete data no restore point needs, in two phases: mark now, delete in a later
    /// prune once the grace period has passed and no older writer runs.
    Prune {
        url: String,
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
    },
    /// Copy a restore point to another location, uploading only what it lacks, then
    /// verify it there. The destination is created (sharing the key) if needed.
    Copy { from: String, to: String, point: String },
    /// Copy a whole restore point of the operator (its volumes, then its record, so that
    /// it is complete at the destination only once everything is there) to another
    /// location, creating the destination with the same key if needed. The destination's
    /// endpoint, region and credentials come from `LIFELINE_TO_`-prefixed variables
    /// (`LIFELINE_TO_S3_ENDPOINT`, `LIFELINE_TO_AWS_ACCESS_KEY_ID`, …) when set.
    Replicate {
        from: String,
        to: String,
        /// The restore point's name (the `lifeline.io/point` tag).
        #[arg(long)]
        point: String,
        /// The namespace of the point's policy (the `lifeline.io/namespace` tag): one
        /// location may hold points of the same name from several namespaces.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Manage key slots.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a key slot for a new passphrase (LIFELINE_NEW_PASSWORD or --new-password-file)
    /// or raw key (--new-key-file).
    Add {
        url: String,
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
    /// Remove a key slot by id (prefix); the slot in use cannot be removed.
    Remove { url: String, id: String },
    /// List key slots.
    List { url: String },
}

/// Exit codes, one per error category, so a script or a data mover can tell them apart
/// without parsing (the JSON result's `error.category` says the same):
///
/// | code | category |
/// | --- | --- |
/// | 0 | success |
/// | 1 | Error, Internal, StorageError (unexpected) |
/// | 2 | InvalidArgument, InvalidLocation (bad arguments, also from argument parsing) |
/// | 3 | WrongKey |
/// | 4 | NotInitialized |
/// | 5 | AlreadyInitialized, AlreadyExists |
/// | 6 | NotFound |
/// | 7 | Locked (retry later) |
/// | 8 | Corrupted (verify found damage, or data failed its check) |
/// | 9 | LocationUnreachable (retry later) |
/// | 10 | PermissionDenied |
/// | 11 | BucketMissing |
/// | 12 | IoError (local files) |
/// | 13 | UnsupportedVersion |
/// | 14 | the command's own result could not be written to `--result-file` |
pub fn exit_code(category: &str) -> i32 {
    match category {
        "InvalidArgument" | "InvalidLocation" => 2,
        "WrongKey" => 3,
        "NotInitialized" => 4,
        "AlreadyInitialized" | "AlreadyExists" => 5,
        "NotFound" => 6,
        "Locked" => 7,
        "Corrupted" => 8,
        "LocationUnreachable" => 9,
        "PermissionDenied" => 10,
        "BucketMissing" => 11,
        "IoError" => 12,
        "UnsupportedVersion" => 13,
        _ => 1,
    }
}

/// The exit code when the result file cannot be written.
pub const EXIT_RESULT_FILE: i32 = 14;

/// A line for people on stderr: plain on a terminal, else a JSON line
/// (`{"level":…,"message":…}`), so stderr off a terminal is JSON lines only.
pub fn say_line(level: &str, message: &str) {
    if std::io::stderr().is_terminal() {
        match level {
            "info" => eprintln!("{message}"),
            other => eprintln!("{other}: {message}"),
        }
    } else {
        eprintln!("{}", json!({"level": level, "message": message}));
    }
}

/// An informational [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        say_line("info", &format!($($arg)*))
    };
}

/// An error line on stderr, with what to do about it: two lines on a terminal, else one
/// JSON line with a `hint`.
fn say_error(message: &str, hint: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("error: {message}");
        if !hint.is_empty() {
            eprintln!("hint: {hint}");
        }
    } else if hint.is_empty() {
        eprintln!("{}", json!({"level": "error", "message": message}));
    } else {
        eprintln!("{}", json!({"level": "error", "message": message, "hint": hint}));
    }
}

/// A command that failed but has a result to report (what `verify` found, say).
#[derive(Debug)]
pub struct FailedWith {
    pub category: &'static str,
    pub message: String,
    pub result: Value,
}

impl std::fmt::Display for FailedWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FailedWith {}

/// Runs a repo command; returns the process exit code.
pub fn run(cmd: RepoCommand, common: &Common) -> i32 {
    let started = Instant::now();
    let name = command_name(&cmd);
    if let RepoCommand::Ls { url, point } = &cmd {
        return ls(url, point, common, started);
    }
    report(name, dispatch(cmd, common), common, started)
}

/// Prints and records a command's outcome; returns the process exit code.
fn report(name: &str, result: anyhow::Result<Value>, common: &Common, started: Instant) -> i32 {
    let outcome = match result {
        Ok(v) => MoverResult::success(name, v, started.elapsed().as_secs_f64()),
        Err(e) => failed(name, e),
    };
    let value = serde_json::to_value(&outcome).unwrap_or_default();
    finish(&value, outcome_code(&outcome), common.json, common.result_file.as_deref())
}

/// The outcome of a command that failed with `e` (said on stderr too).
fn failed(name: &str, e: anyhow::Error) -> MoverResult {
    let (error, result) = match e.downcast_ref::<FailedWith>() {
        Some(f) => (MoverError::new(f.category, &e, "", false), Some(f.result.clone())),
        None => (MoverError::of(&e), None),
    };
    say_error(&error.message, &error.hint);
    MoverResult::failure(name, error, result)
}

/// The exit code an outcome gives the process.
fn outcome_code(outcome: &MoverResult) -> i32 {
    outcome.error.as_ref().map_or(0, |e| exit_code(&e.category))
}

/// Files of a listing kept for its result file (which is cut to a termination message's
/// size anyway).
const LS_KEPT: usize = 1000;

/// `repo ls`: each file printed as the walk reaches it, never the whole listing in memory
/// (a restore point of a million files took 1.9 GB when its listing was built first). Off a
/// terminal, or with `--json`, the result is the same JSON object as any command's,
/// written as it goes: `{"command":"ls","result":{"restorePoint":…,"files":[…]},"ok":…}`,
/// `ok` last, so a listing cut short by a damaged tree is still a whole object, with `ok`
/// false and the error. A reader that stops reading (`| head`) ends the listing.
fn ls(url: &str, point: &str, common: &Common, started: Instant) -> i32 {
    use std::io::Write;
    let found = (|| -> anyhow::Result<_> {
        let repo = open(url, common)?;
        repo.load_index_for_reading()?;
        let (id, snap) = repo.find_snapshot(point)?;
        Ok((repo, id, snap))
    })();
    let (repo, id, snap) = match found {
        Ok(found) => found,
        Err(e) => return report("ls", Err(e), common, started),
    };
    let json_out = common.json || !std::io::stdout().is_terminal();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut open_pipe = true;
    if json_out {
        open_pipe = write!(out, r#"{{"command":"ls","result":{{"restorePoint":"{}","files":["#, id.hex()).is_ok();
    }
    let mut kept = Vec::new();
    let mut first = true;
    let walked = list_tree(&repo, &snap, &mut |path, node| {
        let entry = json!({"path": path, "type": node.kind, "size": node.size, "mode": format!("{:o}", node.mode)});
        if open_pipe {
            open_pipe = if json_out {
                (std::mem::take(&mut first) || out.write_all(b",").is_ok())
                    && serde_json::to_writer(&mut out, &entry).is_ok()
            } else {
                writeln!(out, "{} {:>10} {}", kind_char(node), node.size, path).is_ok()
            };
        }
        if common.result_file.is_some() && kept.len() < LS_KEPT {
            kept.push(entry);
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let outcome = match walked {
        Ok(()) => MoverResult::success("ls", json!({"restorePoint": id.hex(), "files": kept}), seconds),
        Err(e) => failed("ls", e.into()),
    };
    if json_out && open_pipe {
        let tail = match &outcome.error {
            None => format!(r#"]}},"ok":true,"seconds":{seconds}}}"#),
            Some(error) => format!(r#"]}},"ok":false,"error":{}}}"#, serde_json::to_string(error).unwrap_or_default()),
        };
        let _ = writeln!(out, "{tail}");
    }
    // Flushed here (a reader gone by now is no error of the listing's).
    drop(out);
    let value = serde_json::to_value(&outcome).unwrap_or_default();
    record(&value, outcome_code(&outcome), common.result_file.as_deref())
}

/// Prints the result (stdout off a terminal, or with `--json`) and writes the result
/// file: to a temporary name, then renamed, so a reader never sees half a result. The
/// result goes to stdout even if the file cannot be written; the exit code then says so.
pub fn finish(value: &Value, code: i32, json: bool, result_file: Option<&std::path::Path>) -> i32 {
    if json || !std::io::stdout().is_terminal() {
        println!("{value}");
    }
    record(value, code, result_file)
}

/// Writes the result file, if one was asked for; returns `code`, or the exit code that
/// says the file could not be written.
fn record(value: &Value, code: i32, result_file: Option<&std::path::Path>) -> i32 {
    if let Some(path) = result_file
        && let Err(e) = write_result_file(path, value)
    {
        say_line("error", &format!("failed to write the result file {}: {e}", path.display()));
        return EXIT_RESULT_FILE;
    }
    code
}

fn write_result_file(path: &std::path::Path, value: &Value) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        // Compact, and cut to what a termination message holds (the operator reads it there).
        let fitted = crate::mover::result::fit(value, crate::mover::result::TERMINATION_MESSAGE_LIMIT);
        f.write_all(&serde_json::to_vec(&fitted).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A command line `lifeline repo …` that could not be parsed: the same result as any
/// other failure (category InvalidArgument, exit code 2), on stdout and in the result
/// file if one was named, instead of only clap's usage text.
pub fn argument_error(args: &[std::ffi::OsString], message: &str) -> i32 {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let json_flag = args.iter().any(|a| a == "--json");
    let result_file = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--result-file=")
            .map(str::to_string)
            .or_else(|| (a == "--result-file").then(|| args.get(i + 1).cloned()).flatten())
    });
    let command = args.iter().skip_while(|a| *a != "repo").nth(1).filter(|c| !c.starts_with('-')).cloned();
    let message = message.trim_end().trim_start_matches("error: ");
    let hint = "see `lifeline repo --help`";
    say_error(message, hint);
    let error =
        MoverError { category: "InvalidArgument".into(), message: message.into(), hint: hint.into(), retryable: false };
    let value =
        serde_json::to_value(MoverResult::failure(&command.unwrap_or_default(), error, None)).unwrap_or_default();
    finish(&value, 2, json_flag, result_file.as_deref().map(std::path::Path::new))
}

fn command_name(cmd: &RepoCommand) -> &'static str {
    match cmd {
        RepoCommand::Init { .. } => "init",
        RepoCommand::Backup { .. } => "backup",
        RepoCommand::Restore { .. } => "restore",
        RepoCommand::Points { .. } => "points",
        RepoCommand::Ls { .. } => "ls",
        RepoCommand::Verify { .. } => "verify",
        RepoCommand::Repair { .. } => "repair",
        RepoCommand::Forget { .. } => "forget",
        RepoCommand::Prune { .. } => "prune",
        RepoCommand::Copy { .. } => "copy",
        RepoCommand::Replicate { .. } => "replicate",
        RepoCommand::Key { .. } => "key",
    }
}

/// The secret from `--key-file`, `--password-file` or `LIFELINE_PASSWORD`.
pub fn secret(common: &Common) -> anyhow::Result<Secret> {
    use anyhow::Context;
    if let Some(f) = &common.key_file {
        let raw = std::fs::read(f).with_context(|| format!("failed to read key file {}", f.display()))?;
        anyhow::ensure!(raw.len() >= 32, "key file {} must hold at least 32 bytes", f.display());
        return Ok(Secret::RawKey(zeroize::Zeroizing::new(raw)));
    }
    let pass = match &common.password_file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("failed to read password file {}", f.display()))?
        }
        None => std::env::var("LIFELINE_PASSWORD")
            .map_err(|_| anyhow::anyhow!("no key: set LIFELINE_PASSWORD, or pass --password-file or --key-file"))?,
    };
    let pass = pass.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    anyhow::ensure!(!pass.is_empty(), "the passphrase is empty");
    Ok(Secret::Passphrase(zeroize::Zeroizing::new(pass)))
}

/// Opens a location with retries and metering.
pub fn location(url: &str, common: &Common) -> anyhow::Result<(Arc<dyn Backend>, Arc<store::Meters>)> {
    location_with(url, common, false)
}

fn location_with(url: &str, common: &Common, create: bool) -> anyhow::Result<(Arc<dyn Backend>, Arc<store::Meters>)> {
    let mut opts = LocationOptions::from_env();
    opts.create = create;
    if let Some(e) = &common.endpoint {
        opts.endpoint = Some(e.clone());
    }
    let metered = Metered::new(Retrying::new(store::open(url, &opts)?));
    let meters = metered.meters.clone();
    Ok((Arc::new(metered), meters))
}

fn open(url: &str, common: &Common) -> anyhow::Result<Arc<Repository>> {
    let (backend, _) = location(url, common)?;
    Ok(Arc::new(Repository::open(backend, &secret(common)?)?))
}

fn dispatch(cmd: RepoCommand, common: &Common) -> anyhow::Result<Value> {
    match cmd {
        RepoCommand::Init { url } => {
            let (backend, _) = location_with(&url, common, true)?;
            let repo = Repository::init(backend, &secret(common)?)?;
            say!("created repository {} at {url}", repo.config().id);
            Ok(json!({"repository": repo.config().id, "url": url}))
        }
        RepoCommand::Backup { url, path, tags, parent, parent_tag, host, strict } => {
            backup_cmd(&url, &path, BackupArgs { tags, parent, parent_tag, host, strict }, common)
        }
        RepoCommand::Restore { url, point, target, include, overwrite, in_place, direct_io, page_cache: _, check } => {
            let (backend, meters) = location(&url, common)?;
            let repo = Arc::new(Repository::open(backend, &secret(common)?)?);
            let (id, snap) = repo.find_snapshot(&point)?;
            let progress = Arc::new(restore::Progress::default());
            let opts = RestoreOptions { include: include.clone(), overwrite, in_place, direct: direct_io, workers: 0 };
            let summary = with_progress("restoring", &progress.bytes_done, &progress.bytes_total, || {
                restore::run(repo.clone(), &snap, &target, &opts, progress.clone())
            })?;
            let checked = if check {
                let report = crate::repo::check::run(&repo, &snap, &target, &include)?;
                if !report.ok() {
                    return Err(RepoError::CheckFailed {
                        path: target.display().to_string(),
                        detail: report.summary(),
                    }
                    .into());
                }
                say!("checked: {}", report.summary());
                Some(report)
            } else {
                None
            };
            for w in summary.warnings.iter().take(20) {
                say_line("warning", w);
            }
            if in_place {
                say!(
                    "brought {} to {} ({} files, {}): {} files unchanged, {} written, {} entries deleted",
                    target.display(),
                    id.short(),
                    summary.files,
                    human(summary.bytes),
                    summary.unchanged_files,
                    human(summary.bytes_written),
                    summary.removed
                );
            } else {
                say!(
                    "restored {} ({} files, {}) into {}",
                    id.short(),
                    summary.files,
                    human(summary.bytes),
                    target.display()
                );
            }
            Ok(json!({
                "restorePoint": id.hex(),
                "target": target.display().to_string(),
                "summary": summary,
                "check": checked,
                "downloadedBytes": meters.downloaded(),
                "requests": meters.request_count(),
            }))
        }
        RepoCommand::Points { url } => {
            let repo = open(&url, common)?;
            let all = repo.points()?;
            let points = all.good;
            let human_out = std::io::stdout().is_terminal() && !common.json;
            if human_out {
                println!("{:<10} {:<26} {:<14} {:>10} {:>10}  path / tags", "ID", "TIME", "HOST", "SIZE", "NEW");
            }
            let mut list = Vec::new();
            for (id, s) in &points {
                if human_out {
                    let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "{:<10} {:<26} {:<14} {:>10} {:>10}  {} {}",
                        id.short(),
                        &s.time[..s.time.len().min(25)],
                        s.host,
                        human(s.summary.bytes),
                        human(s.summary.new_bytes),
                        s.path,
                        tags.join(",")
                    );
                }
                list.push(point_json(id, s));
            }
            for d in &all.damaged {
                say_line(
                    "warning",
                    &format!(
                        "restore point object {} cannot be read ({}): run `lifeline repo verify`",
                        d.key, d.detail
                    ),
                );
            }
            Ok(json!({"points": list, "damaged": all.damaged}))
        }
        RepoCommand::Ls { .. } => unreachable!("listed by `ls`"),
        RepoCommand::Verify { url, sample } => {
            let repo = open(&url, common)?;
            let report = verify::run(&repo, sample)?;
            say!(
                "checked {} of {} packs ({} blobs, {}) and {} restore points: {}",
                report.packs_checked,
                report.packs_total,
                report.blobs_checked,
                human(report.bytes_read),
                report.snapshots_checked,
                report.summary()
            );
            for d in &report.damaged_points {
                say!("restore point object {} cannot be read: {}", d.key, d.detail);
            }
            for f in &report.damaged_index_files {
                say!("index file {f} cannot be read");
            }
            for a in &report.affected {
                let how = if a.restorable { "restorable, but only until repaired" } else { "NOT restorable" };
                say!("restore point {} ({}) is {how}:", &a.restore_point[..8], a.time);
                for p in a.problems.iter().take(10) {
                    say!("  {p}");
                }
                for p in a.paths.iter().take(50) {
                    say!("  {p}");
                }
            }
            let value = serde_json::to_value(&report)?;
            if !report.ok() {
                let hint = "`lifeline repo repair` rebuilds the index and sets damaged restore points aside";
                return Err(FailedWith {
                    category: "Corrupted",
                    message: format!("verification failed at {url}: {}; {hint}", report.summary()),
                    result: value,
                }
                .into());
            }
            Ok(value)
        }
        RepoCommand::Repair { url } => {
            let repo = open(&url, common)?;
            let report = crate::repo::repair::run(&repo)?;
            say!(
                "repair: {} restore points set aside, index rebuilt from {} packs ({} index files replaced, {} damaged), {} packs with a damaged header ({} repacked), {} unreadable",
                report.points_set_aside.len(),
                report.packs_indexed,
                report.index_files_before,
                report.index_files_damaged,
                report.packs_with_damaged_header.len(),
                report.packs_repacked,
                report.packs_unreadable.len()
            );
            Ok(serde_json::to_value(&report)?)
        }
        RepoCommand::Forget {
            url,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            dry_run,
            prune: then_prune,
            grace,
        } => {
            let repo = open(&url, common)?;
            let rules = Retention {
                keep_last,
                hourly: keep_hourly,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
                yearly: keep_yearly,
                within: keep_within.as_deref().map(|w| super::duration("--keep-within", w)).transpose()?,
            };
            let decisions = prune::forget(&repo, &rules, dry_run)?;
            let removed = decisions.iter().filter(|d| !d.keep).count();
            say!(
                "{} restore points kept, {removed} {}",
                decisions.len() - removed,
                if dry_run { "would be removed" } else { "removed" }
            );
            let mut out = json!({"decisions": decisions, "removed": removed, "dryRun": dry_run});
            if then_prune && !dry_run {
                let report = prune::prune(&repo, super::duration("--grace", &grace)?)?;
                print_prune(&report);
                out["prune"] = serde_json::to_value(&report)?;
            }
            Ok(out)
        }
        RepoCommand::Prune { url, grace } => {
            let repo = open(&url, common)?;
            let report = prune::prune(&repo, super::duration("--grace", &grace)?)?;
            print_prune(&report);
            Ok(serde_json::to_value(&report)?)
        }
        RepoCommand::Copy { from, to, point } => {
            let secret = secret(common)?;
            let src = Arc::new(Repository::open(location(&from, common)?.0, &secret)?);
            let (dst_backend, _) = location_with(&to, common, true)?;
            let dst = open_replica(dst_backend, &secret, &src, &to)?;
            let (id, snap) = src.find_snapshot(&point)?;
            let progress = Arc::new(backup::Progress::default());
            let (new_id, report) = with_progress("copying", &progress.bytes_done, &progress.bytes_total, || {
                copy::run(&src, &dst, &id, &snap, progress.clone())
            })?;
            say!(
                "copied {} to {to} as {}: {} files reused, {} copied, {} uploaded, {} packs verified",
                id.short(),
                new_id.short(),
                report.files_reused,
                report.files_copied,
                human(report.uploaded_bytes),
                report.packs_verified
            );
            Ok(serde_json::to_value(&report)?)
        }
        RepoCommand::Replicate { from, to, point, namespace } => {
            replicate(&from, &to, &point, namespace.as_deref(), common)
        }
        RepoCommand::Key { command } => key_cmd(command, common),
    }
}

/// Options of a replication's destination: `LIFELINE_TO_…` variables, else the usual ones.
fn destination_options(common: &Common) -> LocationOptions {
    let var = |k: &str| std::env::var(format!("LIFELINE_TO_{k}")).ok().filter(|v| !v.is_empty());
    let mut o = LocationOptions::from_env();
    if let Some(e) = &common.endpoint {
        o.endpoint = Some(e.clone());
    }
    // Set, even empty, it decides: an empty one means the provider's own endpoint, never
    // the source's.
    if std::env::var_os("LIFELINE_TO_S3_ENDPOINT").is_some() {
        o.endpoint = var("S3_ENDPOINT");
    }
    if let Some(r) = var("AWS_REGION") {
        o.region = Some(r);
    }
    if let Some(p) = var("S3_PATH_STYLE") {
        o.force_path_style = p == "true" || p == "1";
    }
    o.access_key_id = var("AWS_ACCESS_KEY_ID");
    o.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
    // TLS settings of the destination are its own too.
    o.ca_bundle = crate::store::ca_bundle_from_env("LIFELINE_TO_");
    o.insecure_skip_verify = var("S3_INSECURE_SKIP_VERIFY").is_some_and(|v| v == "true" || v == "1");
    o.create = true;
    o
}

/// The destination of a copy: opened, or created sharing the source's master key (so
/// chunk ids agree and copies deduplicate).
fn open_replica(
    backend: Arc<dyn Backend>,
    secret: &Secret,
    src: &Repository,
    to: &str,
) -> anyhow::Result<Arc<Repository>> {
    let dst = match Repository::open(backend.clone(), secret) {
        Ok(r) => r,
        Err(RepoError::NotInitialized { .. }) => {
            say!("creating repository at {to} with the same key");
            Repository::init_with_master(backend, secret, src.master().clone())?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Arc::new(dst))
}

fn replicate(from: &str, to: &str, point: &str, namespace: Option<&str>, common: &Common) -> anyhow::Result<Value> {
    use crate::mover::record::{KIND_RECORD, TAG_KIND, of_point};
    let secret = secret(common)?;
    let src = Arc::new(Repository::open(location(from, common)?.0, &secret)?);
    let metered = Metered::new(Retrying::new(store::open(to, &destination_options(common))?));
    let meters = metered.meters.clone();
    let dst_backend: Arc<dyn Backend> = Arc::new(metered);
    let dst = open_replica(dst_backend, &secret, &src, to)?;
    let mut parts: Vec<(Id, Snapshot)> =
        src.points()?.good.into_iter().filter(|(_, s)| of_point(&s.tags, namespace, point)).collect();
    let is_record = |s: &Snapshot| s.tags.get(TAG_KIND).is_some_and(|k| k == KIND_RECORD);
    if !parts.iter().any(|(_, s)| is_record(s)) {
        return Err(RepoError::SnapshotNotFound {
            name: format!("{point} (complete, with its record)"),
            url: from.into(),
        }
        .into());
    }
    // Volumes first, the record last: the point is complete at the destination only then.
    parts.sort_by_key(|(_, s)| is_record(s));
    let progress = Arc::new(backup::Progress::default());
    let mut copied = 0;
    let mut present = 0;
    for (id, snap) in &parts {
        let (_, report) = copy::run(&src, &dst, id, snap, progress.clone())?;
        if report.already_present { present += 1 } else { copied += 1 }
    }
    say!(
        "replicated {point} to {to}: {copied} part(s) copied, {present} already there, {} uploaded",
        human(meters.uploaded())
    );
    Ok(json!({"point": point, "copied": copied, "alreadyPresent": present, "uploadedBytes": meters.uploaded()}))
}

fn key_cmd(cmd: KeyCommand, common: &Common) -> anyhow::Result<Value> {
    match cmd {
        KeyCommand::Add { url, new_password_file, new_key_file } => {
            let (backend, _) = location(&url, common)?;
            let current = secret(common)?;
            let new = if new_password_file.is_some() || new_key_file.is_some() {
                secret(&Common { password_file: new_password_file, key_file: new_key_file, ..common.clone() })?
            } else {
                let p = std::env::var("LIFELINE_NEW_PASSWORD").map_err(|_| {
                    anyhow::anyhow!(
                        "no new key: set LIFELINE_NEW_PASSWORD, or pass --new-password-file or --new-key-file"
                    )
                })?;
                anyhow::ensure!(!p.is_empty(), "LIFELINE_NEW_PASSWORD is empty");
                Secret::Passphrase(zeroize::Zeroizing::new(p.into_bytes()))
            };
            let id = keys::add(backend, &current, &new)?;
            say!("added key slot {}", id.short());
            Ok(json!({"added": id.hex()}))
        }
        KeyCommand::Remove { url, id } => {
            let (backend, _) = location(&url, common)?;
            let removed = keys::remove(backend, &secret(common)?, &id)?;
            say!("removed key slot {}", removed.short());
            Ok(json!({"removed": removed.hex()}))
        }
        KeyCommand::List { url } => {
            let (backend, _) = location(&url, common)?;
            let (current, _) = keys::unlock_slot(&*backend, &secret(common)?)?;
            let slots = keys::list(&*backend)?;
            let mut out = Vec::new();
            for (id, slot) in &slots {
                let mark = if *id == current { "*" } else { " " };
                say!("{mark} {} {} {} {:?}", id.short(), slot.created, slot.owner, slot.kdf);
                out.push(
                    json!({"id": id.hex(), "created": slot.created, "owner": slot.owner, "inUse": *id == current}),
                );
            }
            Ok(json!({"keys": out}))
        }
    }
}

fn print_prune(r: &prune::PruneReport) {
    say!(
        "prune: {} packs, {} referenced, {} newly marked, {} deleted ({}), {} waiting for the grace period or older writers",
        r.packs_total,
        r.packs_referenced,
        r.packs_marked,
        r.packs_deleted,
        human(r.bytes_deleted),
        r.packs_waiting
    );
}

struct BackupArgs {
    tags: Vec<String>,
    parent: Option<String>,
    parent_tag: Option<String>,
    host: Option<String>,
    strict: bool,
}

fn backup_cmd(url: &str, path: &std::path::Path, a: BackupArgs, common: &Common) -> anyhow::Result<Value> {
    let (backend, meters) = location(url, common)?;
    let repo = Arc::new(Repository::open(backend, &secret(common)?)?);
    let mut opts = BackupOptions { host: a.host, strict: a.strict, ..Default::default() };
    for t in a.tags {
        let (k, v) = t.split_once('=').ok_or_else(|| anyhow::anyhow!("--tag {t:?}: use KEY=VALUE"))?;
        opts.tags.insert(k.to_string(), v.to_string());
    }
    if let Some(p) = a.parent {
        opts.parent = Some(repo.find_snapshot(&p)?.0);
    }
    if let Some(t) = a.parent_tag {
        let (k, v) = t.split_once('=').ok_or_else(|| anyhow::anyhow!("--parent-tag {t:?}: use KEY=VALUE"))?;
        // Oldest first: the last match is the newest.
        opts.parent = repo
            .points()?
            .good
            .into_iter()
            .rev()
            .find(|(_, s)| s.tags.get(k).is_some_and(|x| x == v))
            .map(|(id, _)| id);
    }
    let progress = Arc::new(backup::Progress::default());
    let (id, snap) = with_progress("backing up", &progress.bytes_done, &progress.bytes_total, || {
        backup::run(repo.clone(), path, &opts, progress.clone())
    })?;
    let s = &snap.summary;
    for p in &s.skipped_paths {
        say_line("warning", &format!("left out: {p}"));
    }
    say!(
        "restore point {} saved: {} files ({} unchanged), {} read, {} new, {} stored, {:.2}s",
        id.short(),
        s.files,
        s.unchanged_files,
        human(s.bytes_read),
        human(s.new_bytes),
        human(s.stored_bytes),
        s.duration_ms as f64 / 1000.0
    );
    let mut v = point_json(&id, &snap);
    v["uploadedBytes"] = json!(meters.uploaded());
    v["requests"] = json!(meters.request_count());
    Ok(v)
}

fn point_json(id: &Id, s: &Snapshot) -> Value {
    json!({
        "id": id.hex(), "short": id.short(), "time": s.time, "host": s.host, "path": s.path,
        "source": s.source, "tags": s.tags, "parent": s.parent.map(|p| p.hex()), "summary": s.summary,
    })
}

fn kind_char(n: &Node) -> char {
    match n.kind {
        Some(NodeKind::Dir) => 'd',
        Some(NodeKind::Symlink) => 'l',
        Some(NodeKind::File) if n.hardlink_to.is_some() => 'h',
        Some(NodeKind::File) => '-',
        Some(NodeKind::BlockDevice) => 'b',
        Some(NodeKind::CharDevice) => 'c',
        Some(NodeKind::Fifo) => 'p',
        _ => '?',
    }
}

/// Calls `f(path, node)` for every node of a restore point, depth first.
pub fn list_tree(repo: &Repository, snap: &Snapshot, f: &mut dyn FnMut(&str, &Node)) -> Result<(), RepoError> {
    /// A window of a directory's entries at a time: a directory of 200,000 files is never
    /// whole in memory.
    fn walk(repo: &Repository, tree: &Id, rel: &str, f: &mut dyn FnMut(&str, &Node)) -> Result<(), RepoError> {
        repo.for_each_tree_window(tree, |nodes: Vec<Node>| {
            for node in nodes {
                let path = backup::join_rel(rel, &source::name_of(&node).to_string_lossy());
                f(&path, &node);
                if let Some(sub) = node.subtree {
                    walk(repo, &sub, &path, f)?;
                }
            }
            Ok(())
        })
    }
    match snap.root.subtree {
        Some(t) => walk(repo, &t, "", f),
        None => {
            f(&snap.path, &snap.root);
            Ok(())
        }
    }
}

/// Runs `work` while showing progress: a bar on a terminal, JSON lines otherwise.
fn with_progress<T>(
    what: &str,
    done: &std::sync::atomic::AtomicU64,
    total: &std::sync::atomic::AtomicU64,
    work: impl FnOnce() -> Result<T, RepoError> + Send,
) -> Result<T, RepoError>
where
    T: Send,
{
    let tty = std::io::stderr().is_terminal();
    // Off a terminal, a JSON progress line every `LIFELINE_PROGRESS_INTERVAL` (2s).
    let every = std::env::var("LIFELINE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| super::duration("LIFELINE_PROGRESS_INTERVAL", &v).ok())
        .unwrap_or(Duration::from_secs(2));
    // Dropping the sender stops the reporter at once (a sleep would make every command
    // wait up to a tick after its work is done).
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let reporter = scope.spawn(move || {
            let bar = tty.then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_message(what.to_string());
                b
            });
            let started = Instant::now();
            let mut last_line = Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(every.min(Duration::from_millis(100)))
            {
                let (d, t) = (done.load(Relaxed), total.load(Relaxed));
                if let Some(b) = &bar {
                    b.set_length(t.max(d));
                    b.set_position(d);
                } else if last_line.elapsed() >= every {
                    last_line = Instant::now();
                    let rate = d as f64 / started.elapsed().as_secs_f64().max(0.001);
                    // One JSON object per line, which the operator reads from the mover's log.
                    eprintln!(
                        "{}",
                        json!({"level": "info", "progress": what, "bytesDone": d, "bytesTotal": t, "bytesPerSecond": rate as u64})
                    );
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        let r = work();
        drop(stop);
        let _ = reporter.join();
        r
    })
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
