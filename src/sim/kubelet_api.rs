//! `pods/log` and `pods/exec`: served by the simulated kubelet for Pods on its node, and
//! answered as the real server answers for a Pod that was never scheduled otherwise.
//! Exec speaks the websocket channel protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`)
//! that kube's `ws` feature and kubectl use: one byte of channel (0 stdin, 1 stdout,
//! 2 stderr, 3 the final `Status`, 255 close) before each message's payload.

use super::Server;
use super::api::{Reply, Req, Target};
use super::errors::{ApiError, ApiResult};
use super::kubelet::{Context, NODE};
use axum::extract::ws::{Message, WebSocket};
use serde_json::{Value, json};
use std::sync::Arc;

/// The Pod of a port-forward, which must be running on the node.
pub fn pod_on_node(server: &Server, t: &Target, name: &str) -> ApiResult<()> {
    let store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    let pod = store.get(&t.rt.key(), &ns, name).ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    if pod["spec"]["nodeName"] != NODE {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    if pod["status"]["phase"] != "Running" {
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        return Err(ApiError::bad_request(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    Ok(())
}

/// The Pod, and the container a request names (or the only one).
fn pod_and_container(server: &Server, t: &Target, name: &str, container: Option<&str>) -> ApiResult<(Value, String)> {
    let store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    let pod = store.get(&t.rt.key(), &ns, name).cloned().ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .chain(pod["spec"]["ephemeralContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match container {
        Some(c) if names.iter().any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
        }
        None if pod["spec"]["containers"].as_array().map(Vec::len) == Some(1) => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    Ok((pod, container))
}

pub fn logs(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let (pod, container) = pod_and_container(server, t, name, req.q("container"))?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let previous = req.q("previous") == Some("true");
    let path = server.kubelet().log_path(uid, &container, previous);
    let Some(text) = path.and_then(|p| std::fs::read(p).ok()) else {
        return Err(ApiError::bad_request(if previous {
            format!("previous terminated container {container:?} in pod {name:?} not found")
        } else {
            format!("container {container:?} in pod {name:?} is waiting to start: ContainerCreating")
        }));
    };
    let mut text = String::from_utf8_lossy(&text).into_owned();
    if let Some(n) = req.q("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        text = lines[from..].iter().map(|l| format!("{l}\n")).collect();
    }
    if let Some(n) = req.q("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        text = text.chars().take(n).collect();
    }
    Ok(Reply::Text { code: 200, body: text, content_type: "text/plain" })
}

/// `exec` without a websocket upgrade: the real server's answer.
pub fn exec(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    pod_and_container(server, t, name, req.q("container"))?;
    Err(ApiError::bad_request("Upgrade request required"))
}

/// What an attach session joins.
pub struct AttachRequest {
    uid: String,
    container: String,
    log: std::path::PathBuf,
    stdin: Option<super::kubelet::Stdin>,
    stdin_once: bool,
}

/// Checks an attach request before the upgrade: the Pod and its running container.
pub fn prepare_attach(server: &Server, t: &Target, name: &str, query: &[(String, String)]) -> ApiResult<AttachRequest> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (pod, container) = pod_and_container(server, t, name, q("container"))?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let (log, stdin) = server.kubelet().attach_target(&uid, &container).ok_or_else(|| {
        ApiError::bad_request(format!("unable to upgrade connection: container {container} not found in pod {name}"))
    })?;
    let spec = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["ephemeralContainers"].as_array().into_iter().flatten())
        .find(|c| c["name"] == container.as_str())
        .cloned()
        .unwrap_or_default();
    let wants_stdin = matches!(q("stdin"), Some("true" | "1"));
    Ok(AttachRequest {
        uid,
        container,
        log,
        stdin: stdin.filter(|_| wants_stdin),
        stdin_once: spec["stdinOnce"].as_bool() == Some(true),
    })
}

/// Streams what the container writes from now on, and feeds it what the client sends,
/// until the container stops or the client goes.
pub async fn run_attach(mut socket: WebSocket, req: AttachRequest, server: Arc<Server>) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut log) = tokio::fs::File::open(&req.log).await else { return };
    let _ = log.seek(std::io::SeekFrom::End(0)).await;
    let mut buf = vec![0u8; 32 * 1024];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    // Pipe writes block, and must keep their order (data, then the close): one writer
    // thread per session, fed in order.
    let (stdin_tx, stdin_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    if let Some(stdin) = req.stdin.clone() {
        let close_on_eof = req.stdin_once;
        std::thread::spawn(move || {
            use std::io::Write;
            for msg in stdin_rx {
                let mut guard = stdin.lock().unwrap_or_else(|e| e.into_inner());
                match (msg, guard.as_mut()) {
                    (Some(d), Some(s)) => {
                        let _ = s.write_all(&d).and_then(|_| s.flush());
                    }
                    (None, _) if close_on_eof => {
                        *guard = None;
                        break;
                    }
                    _ => {}
                }
            }
        });
    }
    let write_stdin = |data: Option<Vec<u8>>| {
        let _ = stdin_tx.send(data);
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Output so far, then stop once the process has.
                let running = server.kubelet().running(&req.uid, &req.container);
                loop {
                    match log.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => if socket.send(frame(1, &buf[..n])).await.is_err() { return },
                    }
                }
                if !running {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => write_stdin(Some(b[1..].to_vec())),
                    255 if b.get(1) == Some(&0) => write_stdin(None),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    write_stdin(None);
                    return;
                }
                _ => {}
            },
        }
    }
    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame { code: 1000, reason: "".into() }))).await;
}

/// What an exec request asks for.
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub stdin: bool,
    pub ctx: Context,
}

/// Checks an exec request before the upgrade: the Pod, its running container, a command.
pub fn prepare_exec(server: &Server, t: &Target, name: &str, query: &[(String, String)]) -> ApiResult<ExecRequest> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (pod, container) = pod_and_container(server, t, name, q("container"))?;
    if pod["spec"]["nodeName"] != NODE {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let argv: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    if argv.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let ctx = server.kubelet().exec_context(uid, &container).ok_or_else(|| {
        ApiError::bad_request(format!("unable to upgrade connection: container not found ({container:?})"))
    })?;
    Ok(ExecRequest { argv, stdin: matches!(q("stdin"), Some("true" | "1")), ctx })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Runs the command and streams it over the socket; the last message is its `Status`.
pub async fn run_exec(mut socket: WebSocket, req: ExecRequest, _server: Arc<Server>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cmd = tokio::process::Command::from(req.ctx.command(&req.argv));
    cmd.stdin(if req.stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let quoted = req.argv.join(" ");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("Internal error occurred: error executing command in container: failed to exec in container: exec: {:?}: {e}", req.argv[0]),
                "details": {"causes": [{"message": e.to_string()}]}, "code": 500});
            let _ = socket.send(frame(3, status.to_string().as_bytes())).await;
            let _ = socket
                .send(Message::Close(Some(axum::extract::ws::CloseFrame { code: 1000, reason: "".into() })))
                .await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let (mut ob, mut eb) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            n = out.read(&mut ob), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => if socket.send(frame(1, &ob[..n])).await.is_err() { break },
            },
            n = err.read(&mut eb), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => if socket.send(frame(2, &eb[..n])).await.is_err() { break },
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => if let Some(s) = &mut stdin { let _ = s.write_all(&b[1..]).await; },
                    255 if b.get(1) == Some(&0) => { stdin = None; }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    drop(stdin);
    let status = match child.wait().await {
        Ok(s) if s.success() => json!({"metadata": {}, "status": "Success"}),
        Ok(s) => {
            let code = s.code().unwrap_or(137);
            json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": format!("command terminated with non-zero exit code: error executing command [{quoted}], exit code {code}"),
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        }
        Err(e) => json!({"metadata": {}, "status": "Failure", "message": e.to_string()}),
    };
    let _ = socket.send(frame(3, status.to_string().as_bytes())).await;
    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame { code: 1000, reason: "".into() }))).await;
}
