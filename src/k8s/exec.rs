//! Commands in running containers (`pods/exec`), with a deadline: how hooks run.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code (0 on success), `None` when it did not finish in time.
    pub code: Option<i32>,
    /// The end of stdout and stderr together (at most 2 KiB), for conditions and Events.
    pub output: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// One line for a condition: the exit code or the timeout, and the output's end.
    pub fn describe(&self, timeout: Duration) -> String {
        let what = match self.code {
            Some(c) => format!("exit code {c}"),
            None => format!("no answer within {}", crate::api::schedule::go_duration(timeout)),
        };
        let out = self.output.trim();
        if out.is_empty() { what } else { format!("{what}: {out}") }
    }
}

const KEEP: usize = 2048;

/// Runs `command` in `container` of Pod `pod`, waiting at most `timeout`.
pub async fn run(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Result<Output, kube::Error> {
    let ap = AttachParams::default().container(container).stdin(false).stdout(true).stderr(true);
    let mut proc = pods.exec(pod, command.to_vec(), &ap).await?;
    let mut stdout = proc.stdout();
    let mut stderr = proc.stderr();
    let status = proc.take_status();
    let work = async move {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let a = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let b = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        tokio::join!(a, b);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((status, out)) => {
            let code = match status {
                Some(s) if s.status.as_deref() == Some("Success") => 0,
                Some(s) => exit_code(&s).unwrap_or(1),
                None => 1,
            };
            Ok(Output { code: Some(code), output: tail(&out) })
        }
        Err(_) => {
            proc.abort();
            Ok(Output { code: None, output: String::new() })
        }
    }
}

fn exit_code(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i32> {
    s.details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_ref()?
        .parse()
        .ok()
}

fn tail(b: &[u8]) -> String {
    let start = b.len().saturating_sub(KEEP);
    let mut s = String::from_utf8_lossy(&b[start..]).into_owned();
    if start > 0 {
        s.insert(0, '…');
    }
    s
}
