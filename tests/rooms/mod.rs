//! The rooms of the crate stay apart (see `src/lib.rs`): the data path (`repo/`,
//! `store/`) never names Kubernetes, `api/` imports nothing else of the crate, and only
//! `main.rs`, `cli/` and tests name the simulated cluster. Plus the one bridge from async
//! code to the data path (`mover::inline`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source lines with their comments removed (doc comments may name anything).
fn code(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or_default().to_string()))
        .collect()
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).filter(|w| !w.is_empty()).collect()
}

#[test]
fn the_rooms_of_the_crate_stay_apart() {
    let src = crate::support::path("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let room = rel.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_string();
        for (n, line) in code(f) {
            for w in words(&line) {
                let names_kube = w == "kube" || w.starts_with("kube::") || w.starts_with("k8s_openapi");
                if (room == "repo" || room == "store") && names_kube {
                    wrong.push(format!("src/{rel}:{n}: the data path names Kubernetes ({w})"));
                }
                if room == "api" && w.starts_with("crate::") && !w.starts_with("crate::api") {
                    wrong.push(format!("src/{rel}:{n}: api/ imports another room ({w})"));
                }
                let names_sim = w.starts_with("crate::sim") || w.starts_with("lifeline::sim") || w == "sim::Cluster";
                if names_sim && !matches!(room.as_str(), "main" | "cli" | "sim" | "lib") {
                    wrong.push(format!("src/{rel}:{n}: only main.rs and cli/ name the simulated cluster ({w})"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "rooms crossed:\n{}", wrong.join("\n"));
    // The check itself sees what it looks for.
    assert!(words("use kube::api::Api;").iter().any(|w| w.starts_with("kube::")));
}

/// The data path drives object storage on its own runtime: called straight from async
/// code it panics; through `mover::inline::run` it works.
#[test]
fn async_code_reaches_the_data_path_through_the_one_bridge() {
    use lifeline::repo::{Repository, Secret};
    let (server, _) = crate::support::s3::regions();
    let backend = server.open(&format!("s3://lifeline/{}", crate::support::s3::unique("bridge")));
    let secret = || Secret::Passphrase(zeroize::Zeroizing::new(b"bridge".to_vec()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let b = backend.clone();
        let direct = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Repository::init(b, &secret())));
        assert!(direct.is_err(), "a blocking data-path call inside async code should panic");
        let b = backend.clone();
        let id = lifeline::mover::inline::run(move || Repository::init(b, &secret()).map(|r| r.config().id.clone()))
            .await
            .unwrap();
        let b = backend.clone();
        let points = lifeline::mover::inline::run(move || Repository::open(b, &secret())?.points()).await.unwrap();
        assert!(!id.is_empty() && points.good.is_empty());
    });
}
