//! The torture test: random interleavings of backup, copy, forget, prune (grace 0), key
//! add/remove and init on one repository, as real `lifeline` processes that are paused,
//! resumed and killed at random points. After each round: some key opens the repository,
//! `verify` finds nothing wrong (nothing was damaged), and every restore point reported
//! as saved that retention has not removed restores byte for byte.
//!
//! Seeds are fixed: `LIFELINE_TORTURE_SEEDS=first..last` runs others (default 1..4), and
//! `LIFELINE_TORTURE_ROUNDS` sets rounds per seed (default 4). A failure names its seed.

use super::bytes;
use super::roundtrip::describe;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// xorshift64*: small, fixed, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn command(args: &[&str], password: &str, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeline"));
    cmd.args(args)
        .env("LIFELINE_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], password: &str) -> (Option<i32>, Value) {
    let out = command(args, password, &[]).output().unwrap();
    let v = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or(Value::Null);
    (out.status.code(), v)
}

/// What one operation was, to judge its outcome.
#[derive(Debug, Clone)]
enum Op {
    Backup { src: PathBuf },
    Copy { point: String },
    Forget,
    Prune,
    KeyAdd { new: String },
    KeyRemove,
    Init { password: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Run,
    /// Stopped after a delay (counted from when it holds its lock, if `locked`) for a
    /// while, then continued.
    Pause {
        after_ms: u64,
        for_ms: u64,
        locked: bool,
    },
    /// Stopped, its lock removed as a prune removes an expired one, then continued: it
    /// must not record a point that needs data deleted meanwhile.
    LoseLock {
        after_ms: u64,
    },
    Kill {
        after_ms: u64,
        locked: bool,
    },
}

struct World {
    dir: PathBuf,
    repo: PathBuf,
    /// A second repository whose points are copied into `repo`.
    other: PathBuf,
    other_points: Vec<(String, Contents)>,
    passwords: Arc<Mutex<Vec<String>>>,
    /// Saved points (id) and what each must restore to.
    saved: BTreeMap<String, Contents>,
    /// Volumes being backed up this round (one backup per volume at a time, as the
    /// operator runs one per policy).
    busy: BTreeSet<usize>,
    pool: Vec<Vec<u8>>,
    n: u64,
    /// What happened, for the summary printed at the end.
    stats: BTreeMap<String, u64>,
}

impl World {
    fn new(dir: &Path, rng: &mut Rng) -> Self {
        let pool: Vec<Vec<u8>> = (0..8).map(|i| bytes(600_000 + 200_000 * i, rng.next(), i % 3 == 0)).collect();
        let mut w = World {
            dir: dir.to_path_buf(),
            repo: dir.join("repo"),
            other: dir.join("other"),
            other_points: Vec::new(),
            passwords: Arc::new(Mutex::new(vec!["pw0".into()])),
            saved: BTreeMap::new(),
            pool,
            n: 0,
            stats: BTreeMap::new(),
            busy: BTreeSet::new(),
        };
        assert_eq!(run(&["repo", "init", &url(&w.repo)], "pw0").0, Some(0));
        assert_eq!(run(&["repo", "init", &url(&w.other)], "pw0").0, Some(0));
        for i in 0..2 {
            let src = w.dir.join(format!("other-{i}"));
            w.fill(&src, rng);
            let (code, v) = run(&["repo", "backup", &url(&w.other), src.to_str().unwrap()], "pw0");
            assert_eq!(code, Some(0), "{v}");
            w.other_points.push((v["result"]["id"].as_str().unwrap().to_string(), describe(&src)));
        }
        w
    }

    /// New content at `src` (a volume: the same path, so retention groups its points):
    /// pool files (shared between points, so packs end up partly used), a unique file, a
    /// subdirectory.
    fn fill(&mut self, src: &Path, rng: &mut Rng) {
        self.n += 1;
        let _ = std::fs::remove_dir_all(src);
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for (i, data) in self.pool.iter().enumerate() {
            if rng.chance(50) {
                let mut data = data.clone();
                if rng.chance(30) {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] ^= 0xff;
                }
                std::fs::write(src.join(format!("pool{i}")), data).unwrap();
            }
        }
        std::fs::write(src.join("sub/own"), bytes(rng.below(3_000_000) as usize, rng.next(), rng.chance(50))).unwrap();
        std::fs::write(src.join("small"), format!("point {}", self.n)).unwrap();
    }

    fn password(&self, rng: &mut Rng) -> String {
        let p = self.passwords.lock().unwrap();
        p[rng.below(p.len() as u64) as usize].clone()
    }

    fn pick_op(&mut self, rng: &mut Rng) -> Op {
        match rng.below(100) {
            0..=39 => match (0..VOLUMES).find(|v| !self.busy.contains(v)) {
                Some(v) => {
                    self.busy.insert(v);
                    let src = self.dir.join(format!("vol-{v}"));
                    self.fill(&src, rng);
                    Op::Backup { src }
                }
                None => Op::Forget,
            },
            40..=51 => {
                let (point, _) = self.other_points[rng.below(self.other_points.len() as u64) as usize].clone();
                Op::Copy { point }
            }
            52..=63 => Op::Forget,
            64..=79 => Op::Prune,
            80..=87 => {
                self.n += 1;
                Op::KeyAdd { new: format!("pw{}", self.n) }
            }
            88..=94 => Op::KeyRemove,
            _ => {
                self.n += 1;
                Op::Init { password: format!("init{}", self.n) }
            }
        }
    }

    fn start(&self, op: &Op, password: &str, rng: &mut Rng) -> Child {
        let repo = url(&self.repo);
        match op {
            Op::Backup { src } => command(&["repo", "backup", &repo, src.to_str().unwrap()], password, &[]).spawn(),
            Op::Copy { point } => command(&["repo", "copy", &url(&self.other), &repo, point], password, &[]).spawn(),
            Op::Forget => {
                let keep = (1 + rng.below(2)).to_string();
                command(&["repo", "forget", &repo, "--keep-last", &keep], password, &[]).spawn()
            }
            Op::Prune => command(&["repo", "prune", &repo, "--grace", "0s"], password, &[]).spawn(),
            Op::KeyAdd { new } => {
                command(&["repo", "key", "add", &repo], password, &[("LIFELINE_NEW_PASSWORD", new)]).spawn()
            }
            Op::KeyRemove => {
                let (_, list) = run(&["repo", "key", "list", &repo], password);
                let others: Vec<String> = list["result"]["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|k| k["inUse"] == false)
                    .filter_map(|k| k["id"].as_str().map(str::to_string))
                    .collect();
                let target =
                    others.get(rng.below(others.len().max(1) as u64) as usize).cloned().unwrap_or_else(|| "00".into());
                command(&["repo", "key", "remove", &repo, &target], password, &[]).spawn()
            }
            Op::Init { password } => command(&["repo", "init", &repo], password, &[]).spawn(),
        }
        .unwrap()
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Whether process `pid` holds a lock object.
fn holds_lock(repo: &Path, pid: u32) -> bool {
    std::fs::read_dir(repo.join("locks")).into_iter().flatten().flatten().any(|e| {
        std::fs::read(e.path())
            .ok()
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            .is_some_and(|l| l["pid"].as_u64() == Some(u64::from(pid)))
    })
}

/// Removes the lock objects of process `pid`, as a prune removes expired ones.
fn remove_locks_of(repo: &Path, pid: Option<u32>) {
    for e in std::fs::read_dir(repo.join("locks")).into_iter().flatten().flatten() {
        let Ok(raw) = std::fs::read(e.path()) else { continue };
        let Ok(lock) = serde_json::from_slice::<Value>(&raw) else { continue };
        let holder = lock["pid"].as_u64().map(|p| p as u32);
        let dead = holder.is_some_and(|p| std::fs::metadata(format!("/proc/{p}")).is_err());
        if pid.map_or(dead, |p| holder == Some(p)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Volumes backed up by the rounds.
const VOLUMES: usize = 3;

/// What a restore must give: see `roundtrip::describe`.
type Contents = BTreeMap<String, String>;

fn round(w: &mut World, rng: &mut Rng, seed: u64, round: u32) {
    w.busy.clear();
    let ops: Vec<(Op, Fate, String, u64)> = (0..4 + rng.below(4))
        .map(|_| {
            let op = w.pick_op(rng);
            let fate = match rng.below(100) {
                0..=59 => Fate::Run,
                60..=79 => {
                    Fate::Pause { after_ms: rng.below(400), for_ms: 100 + rng.below(900), locked: rng.chance(70) }
                }
                80..=87 => Fate::LoseLock { after_ms: rng.below(40) },
                _ => Fate::Kill { after_ms: rng.below(600), locked: rng.chance(70) },
            };
            let password = w.password(rng);
            (op, fate, password, rng.below(300))
        })
        .collect();
    let ctx = format!("seed {seed} round {round}");
    // What each backup's volume holds now (nothing changes it during the round).
    let expected: BTreeMap<PathBuf, Contents> = ops
        .iter()
        .filter_map(|(op, ..)| match op {
            Op::Backup { src } => Some((src.clone(), describe(src))),
            _ => None,
        })
        .collect();
    let outcomes: Vec<(Op, Fate, Option<i32>, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = ops
            .into_iter()
            .map(|(op, fate, password, delay)| {
                std::thread::sleep(Duration::from_millis(delay));
                let child = w.start(&op, &password, &mut Rng(rng.next() | 1));
                let repo = w.repo.clone();
                s.spawn(move || {
                    let mut child = child;
                    let start = Instant::now();
                    // Waits until `ms` after the start; false if the process ended first.
                    // Waits `ms` (after the process holds a lock, if `locked`); false if the
                    // process ended first.
                    let wait_until = |child: &mut Child, ms: u64, locked: bool| {
                        let mut from = Instant::now();
                        if locked {
                            while !holds_lock(&repo, child.id()) {
                                if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(30) {
                                    return false;
                                }
                                std::thread::sleep(Duration::from_millis(2));
                            }
                            from = Instant::now();
                        }
                        while from.elapsed() < Duration::from_millis(ms) {
                            if child.try_wait().unwrap().is_some() {
                                return false;
                            }
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        true
                    };
                    match fate {
                        Fate::Run => {}
                        Fate::Pause { after_ms, for_ms, locked } => {
                            if wait_until(&mut child, after_ms, locked) {
                                signal(&child, libc::SIGSTOP);
                                std::thread::sleep(Duration::from_millis(for_ms));
                                signal(&child, libc::SIGCONT);
                            }
                        }
                        Fate::LoseLock { after_ms } => {
                            if wait_until(&mut child, after_ms, true) {
                                signal(&child, libc::SIGSTOP);
                                remove_locks_of(&repo, Some(child.id()));
                                // A prune meanwhile may now delete what it built on.
                                let _ = run(&["repo", "prune", &url(&repo), "--grace", "0s"], "pw0");
                                signal(&child, libc::SIGCONT);
                            }
                        }
                        Fate::Kill { after_ms, locked } => {
                            if wait_until(&mut child, after_ms, locked) {
                                let _ = child.kill();
                            }
                        }
                    }
                    let out = child.wait_with_output().unwrap();
                    let v: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or(Value::Null);
                    (op, fate, out.status.code(), v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for (op, fate, code, v) in &outcomes {
        let ok = *code == Some(0) && v["ok"] == true;
        match op {
            Op::Backup { src } if ok => {
                w.saved.insert(v["result"]["id"].as_str().unwrap().to_string(), expected[src].clone());
            }
            Op::Copy { point } if ok => {
                let contents = w.other_points.iter().find(|(p, _)| p == point).unwrap().1.clone();
                w.saved.insert(v["result"]["destinationPoint"].as_str().unwrap().to_string(), contents);
            }
            Op::KeyAdd { new } if ok => w.passwords.lock().unwrap().push(new.clone()),
            Op::Init { password } => {
                assert!(!ok, "{ctx}: init over an existing repository succeeded: {v}");
                if !matches!(fate, Fate::Kill { .. }) {
                    assert_eq!(v["error"]["category"], "AlreadyInitialized", "{ctx}: {v}");
                }
                let (open, _) = run(&["repo", "points", &url(&w.repo)], password);
                assert_eq!(open, Some(3), "{ctx}: a failed init's password opens the repository");
            }
            _ => {}
        }
        // A failure is always reported as one: a category, never a crash.
        if *code != Some(0) && !matches!(fate, Fate::Kill { .. }) {
            assert!(v["error"]["category"].is_string(), "{ctx}: {op:?} failed without a result: {code:?} {v}");
        }
    }
    for (op, fate, code, v) in &outcomes {
        let name = format!("{op:?}").split([' ', '{']).next().unwrap_or_default().to_string();
        let fate = format!("{fate:?}").split([' ', '{']).next().unwrap_or_default().to_string();
        let how = v["error"]["category"].as_str().map(str::to_string).unwrap_or_else(|| format!("exit {code:?}"));
        *w.stats.entry(format!("{name} {fate} -> {how}")).or_default() += 1;
        for k in ["packsDeleted", "packsRepacked", "packsMarked"] {
            *w.stats.entry(format!("prune {k}")).or_default() += v["result"][k].as_u64().unwrap_or(0);
        }
    }
    // Killed holders' locks would expire; let the next prunes see them gone.
    remove_locks_of(&w.repo, None);
    check(w, &ctx, &outcomes);
    // A prune between rounds deletes what earlier ones marked (no writer runs now).
    {
        let (_, v) = run(&["repo", "prune", &url(&w.repo), "--grace", "0s"], &w.password(rng));
        for k in ["packsDeleted", "packsRepacked", "packsMarked"] {
            *w.stats.entry(format!("prune {k}")).or_default() += v["result"][k].as_u64().unwrap_or(0);
        }
        check(w, &format!("{ctx}, prune after"), &outcomes);
    }
}

/// After a round: a key opens the repository, verify is clean, saved points restore.
fn check(w: &World, ctx: &str, outcomes: &[(Op, Fate, Option<i32>, Value)]) {
    let repo = url(&w.repo);
    let passwords = w.passwords.lock().unwrap().clone();
    let password = passwords
        .iter()
        .find(|p| run(&["repo", "points", &repo], p).0 == Some(0))
        .unwrap_or_else(|| panic!("{ctx}: no key opens the repository after {outcomes:?}"))
        .clone();
    let (code, report) = run(&["repo", "verify", &repo], &password);
    assert_eq!(code, Some(0), "{ctx}: verify found damage nobody caused: {report}\nafter {outcomes:?}");
    let (_, points) = run(&["repo", "points", &repo], &password);
    let present: BTreeSet<String> =
        points["result"]["points"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    for (id, contents) in w.saved.iter().filter(|(id, _)| present.contains(*id)) {
        let target = w.dir.join(format!("restore-{}", &id[..12]));
        let _ = std::fs::remove_dir_all(&target);
        let (code, v) = run(&["repo", "restore", &repo, id, target.to_str().unwrap()], &password);
        assert_eq!(code, Some(0), "{ctx}: saved point {id} does not restore: {v}\nafter {outcomes:?}");
        assert_eq!(&describe(&target), contents, "{ctx}: point {id} restored different content");
        std::fs::remove_dir_all(&target).unwrap();
    }
}

fn range(var: &str, default: (u64, u64)) -> (u64, u64) {
    std::env::var(var)
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once("..")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or(default)
}

#[test]
fn concurrent_writers_prunes_and_key_changes_never_lose_a_saved_point() {
    let (first, last) = range("LIFELINE_TORTURE_SEEDS", (1, 4));
    let rounds: u32 = std::env::var("LIFELINE_TORTURE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for seed in first..=last {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut w = World::new(tmp.path(), &mut rng);
        for r in 0..rounds {
            round(&mut w, &mut rng, seed, r);
        }
        for (k, v) in &w.stats {
            *totals.entry(k.clone()).or_default() += v;
        }
        *totals.entry("points checked".into()).or_default() += w.saved.len() as u64;
        // A race of two inits on a fresh location: one repository, one master secret.
        let fresh = url(&tmp.path().join(format!("fresh-{seed}")));
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| run(&["repo", "init", &fresh], "alice"));
            let b = s.spawn(|| run(&["repo", "init", &fresh], "bob"));
            (a.join().unwrap(), b.join().unwrap())
        });
        let winners: Vec<&str> =
            [("alice", &a), ("bob", &b)].iter().filter(|(_, r)| r.0 == Some(0)).map(|(n, _)| *n).collect();
        assert_eq!(winners.len(), 1, "seed {seed}: {a:?} {b:?}");
        let loser = if winners[0] == "alice" { "bob" } else { "alice" };
        assert_eq!(run(&["repo", "points", &fresh], loser).0, Some(3), "seed {seed}: the loser's key opens it");
        assert_eq!(run(&["repo", "points", &fresh], winners[0]).0, Some(0));
    }
    eprintln!("torture, seeds {first}..{last}, {rounds} rounds each:");
    for (k, v) in totals {
        eprintln!("  {k}: {v}");
    }
}
