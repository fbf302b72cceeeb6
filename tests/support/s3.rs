//! Real S3 servers (SeaweedFS) for tests, started on free loopback ports with
//! `scripts/s3.sh` and stopped when the test process exits.

use lifeline::store::{self, Backend, LocationOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

pub const ACCESS_KEY: &str = "lifelinetest";
pub const SECRET_KEY: &str = "lifelinetestsecret0123456789";

/// One SeaweedFS instance: a "region".
pub struct S3Server {
    pub endpoint: String,
    pub port: u16,
    pub dir: PathBuf,
    buckets: String,
}

static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn stop_all() {
    for dir in STARTED.lock().map(|v| v.clone()).unwrap_or_default() {
        let _ = Command::new(script()).arg("stop").arg(&dir).status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn script() -> PathBuf {
    super::path("scripts/s3.sh")
}

/// A base port whose service ports (P..P+4, P+10000..P+10004) are all free.
fn free_base() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = seed | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Below the kernel's ephemeral range (32768 and up) with the +10000 ports too, so
        // no client connection of another test can take a port between check and start.
        let base = 20000 + (x % 270) as u16 * 10;
        let free = (0..5).chain(10000..10005).all(|off| TcpListener::bind(("127.0.0.1", base + off)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range for an S3 server");
}

impl S3Server {
    /// Starts a new instance with `buckets` (comma-separated).
    pub fn start(buckets: &str) -> Self {
        static REGISTER: OnceLock<()> = OnceLock::new();
        REGISTER.get_or_init(|| {
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe { libc::atexit(stop_all) };
        });
        let dir = tempfile::Builder::new().prefix("lifeline-s3-").tempdir().expect("temp dir").keep();
        let port = free_base();
        let mut server = Self { endpoint: String::new(), port, dir, buckets: buckets.into() };
        server.launch();
        STARTED.lock().unwrap().push(server.dir.clone());
        server
    }

    fn launch(&mut self) {
        let out = Command::new(script())
            .args(["start", self.dir.to_str().unwrap(), &self.port.to_string(), &self.buckets])
            .output()
            .expect("failed to run scripts/s3.sh");
        assert!(
            out.status.success(),
            "SeaweedFS failed to start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.endpoint = String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_string();
    }

    /// Kills the server abruptly (SIGKILL), as a crash or a lost site would.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: signalling a process group we started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
            for _ in 0..100 {
                // SAFETY: signal 0 only checks existence.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// Starts it again with its data; ready once its buckets take writes again.
    pub fn restart(&mut self) {
        self.launch();
    }

    pub fn options(&self) -> LocationOptions {
        LocationOptions {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..Default::default()
        }
    }

    pub fn open(&self, url: &str) -> Arc<dyn Backend> {
        store::open(url, &self.options()).expect("open S3 location")
    }

    /// Runs `scripts/s3-admin.py` against this server.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg(super::path("scripts/s3-admin.py"))
            .arg(&self.endpoint)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .expect("python3");
        assert!(out.status.success(), "s3-admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Two regions shared by the tests of this process, each with bucket `lifeline`.
pub fn regions() -> &'static (S3Server, S3Server) {
    static REGIONS: OnceLock<(S3Server, S3Server)> = OnceLock::new();
    REGIONS.get_or_init(|| (S3Server::start("lifeline"), S3Server::start("lifeline")))
}

/// A fresh prefix for one test, so tests never see each other's objects.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", &lifeline::repo::format::Id::random().hex()[..10])
}
