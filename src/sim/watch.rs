//! Watches: from a resourceVersion (replaying recorded changes), from 0 (synthetic ADDED
//! for what exists), with selectors, bookmarks near the end, and 410 Expired as an ERROR
//! event for a compacted version. Streaming lists (`sendInitialEvents=true` with
//! `resourceVersionMatch=NotOlderThan`, the WatchList feature, on by default since 1.32)
//! send the current state as ADDED events and then, when bookmarks are allowed, a
//! BOOKMARK annotated `k8s.io/initial-events-end: "true"` (apiserver `pkg/storage/cacher`),
//! which informers of client-go 1.35 wait for before they call themselves synced.

use super::api::{Req, Target, parse_rv, parse_selectors, present};
use super::errors::{ApiError, ApiResult, Cause};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Event, EventType};
use super::{Server, api::Reply};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub struct WatchReq {
    pub target: Target,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub rv: Option<u64>,
    pub timeout: Duration,
    pub bookmarks: bool,
    /// `sendInitialEvents`, when given.
    pub initial_events: Option<bool>,
    /// `as=Table` was asked for: each event's object is a one-row Table (with the
    /// `includeObject` option), as `kubectl get --watch` asks.
    pub table: Option<String>,
}

/// The annotation of the bookmark that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// apimachinery `validateWatchOptions`, with the WatchList feature on (its default since
/// 1.32).
fn validate(req: &Req) -> ApiResult<Option<bool>> {
    let flag = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T");
    let initial = req.q("sendInitialEvents").map(flag);
    let matched = req.q("resourceVersionMatch").unwrap_or("");
    let mut causes = Vec::new();
    if initial.is_some() && matched != "NotOlderThan" {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !matched.is_empty() {
        if initial.is_none() {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if matched != "NotOlderThan" {
            let value = crate::api::field::go_quote(matched);
            causes.push(Cause::not_supported("resourceVersionMatch", &value, &["NotOlderThan"]));
        }
        if req.q("continue").is_some_and(|c| !c.is_empty()) {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
    }
    if causes.is_empty() {
        return Ok(initial);
    }
    Err(ApiError::invalid_in("meta.k8s.io", "ListOptions", "", causes))
}

pub fn start(_server: &Server, req: &Req, t: &Target) -> ApiResult<Reply> {
    let initial_events = validate(req)?;
    let (labels, fields) = parse_selectors(req, &t.rt)?;
    let rv = match req.q("resourceVersion").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_rv(s).map_err(|_| {
            let q = crate::api::field::go_quote(s);
            ApiError::internal(format!(
                "resourceVersion: Invalid value: {q}: strconv.ParseUint: parsing {q}: invalid syntax"
            ))
        })?),
        None => None,
    };
    let timeout = req.q("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    Ok(Reply::Watch(WatchReq {
        target: t.clone(),
        labels,
        fields,
        rv,
        timeout: Duration::from_secs(timeout),
        bookmarks: matches!(req.q("allowWatchBookmarks"), Some("true" | "1")),
        initial_events,
        table: req.accept.contains("as=Table").then(|| req.q("includeObject").unwrap_or("Metadata").to_string()),
    }))
}

impl WatchReq {
    fn in_scope(&self, e: &Event) -> bool {
        e.res == self.target.rt.key() && self.target.namespace.as_deref().is_none_or(|ns| ns == e.namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&obj["metadata"]["labels"]) && self.fields.matches(obj)
    }

    /// The event a watcher sees for a change, given its selectors.
    fn translate(&self, e: &Event) -> Option<Value> {
        if !self.in_scope(e) {
            return None;
        }
        let now = self.matches(&e.object);
        let before = e.old.as_ref().is_some_and(|o| self.matches(o));
        let (typ, obj) = match e.typ {
            EventType::Added if now => ("ADDED", e.object.clone()),
            EventType::Modified if now && before => ("MODIFIED", e.object.clone()),
            EventType::Modified if now => ("ADDED", e.object.clone()),
            EventType::Modified if before => {
                // Leaving the selection: DELETED with the previous state and the new version.
                let mut o = e.old.clone().unwrap_or_default();
                o["metadata"]["resourceVersion"] = e.object["metadata"]["resourceVersion"].clone();
                ("DELETED", o)
            }
            EventType::Deleted if before || now => ("DELETED", e.object.clone()),
            _ => return None,
        };
        Some(json!({"type": typ, "object": present(&self.target.rt, &obj)}))
    }
}

/// Streams a watch's events as JSON lines into `out` (after the cluster's watch lag)
/// until the timeout, the client going away, or the cluster stopping.
pub async fn run(server: Arc<Server>, w: WatchReq, out: mpsc::Sender<bytes::Bytes>) {
    // With a lag, events pass through a queue that holds each until its time has come.
    let lag = server.opts.watch_lag;
    let tx = if lag.is_zero() {
        out
    } else {
        let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(1024);
        tokio::spawn(async move {
            let mut held: std::collections::VecDeque<(tokio::time::Instant, bytes::Bytes)> = Default::default();
            loop {
                let due = held.front().map(|(t, _)| *t);
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(line) => held.push_back((tokio::time::Instant::now() + lag, line)),
                        None if held.is_empty() => return,
                        None => {
                            // The watch ended: what it had sent still arrives, late.
                            for (t, line) in held.drain(..) {
                                tokio::time::sleep_until(t).await;
                                if out.send(line).await.is_err() { return; }
                            }
                            return;
                        }
                    },
                    _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                        let (_, line) = held.pop_front().expect("due");
                        if out.send(line).await.is_err() { return; }
                    }
                    _ = out.closed() => return,
                }
            }
        });
        tx
    };
    // A Table watch: each object becomes a one-row Table, the columns only in the first
    // (the real server's watch encoder sets `noHeaders` after it).
    let headers = std::sync::atomic::AtomicBool::new(true);
    let as_table = |mut v: Value| -> Value {
        if let Some(include) = &w.table
            && matches!(v["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED"))
        {
            let first = headers.swap(false, std::sync::atomic::Ordering::Relaxed);
            v["object"] = super::table::table_with(&w.target.rt, &[v["object"].take()], None, include, first);
        }
        v
    };
    let send = |v: Value| {
        let v = as_table(v);
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        tx.send(bytes::Bytes::from(line))
    };
    let deadline = tokio::time::Instant::now() + w.timeout;
    let (initial, mut rx, start_rv, expired) = {
        let store = server.store();
        let rx = store.tx.subscribe();
        let res = w.target.rt.key();
        let current = || -> Vec<Value> {
            store
                .list(&res, w.target.namespace.as_deref())
                .filter(|o| w.matches(o))
                .map(|o| json!({"type": "ADDED", "object": present(&w.target.rt, o)}))
                .collect()
        };
        match (w.initial_events, w.rv) {
            // A streaming list: the newest state (never older than the version asked for,
            // which the sim's one store always is).
            (Some(true), _) => (current(), rx, store.rv, None),
            // No initial events and no version: from now on.
            (Some(false), None | Some(0)) => (Vec::new(), rx, store.rv, None),
            (_, Some(rv)) if rv != 0 && rv < store.compacted => (Vec::new(), rx, rv, Some((rv, store.compacted))),
            (_, Some(rv)) if rv != 0 => {
                let evs: Vec<Value> = store.since(&res, rv).iter().filter_map(|e| w.translate(e)).collect();
                (evs, rx, rv, None)
            }
            _ => (current(), rx, store.rv, None),
        }
    };
    if let Some((rv, compacted)) = expired {
        let _ = send(json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {rv} ({compacted})"), "reason": "Expired", "code": 410,
        }}))
        .await;
        return;
    }
    let mut last_rv = start_rv;
    for e in initial {
        if let Some(rv) = e["object"]["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()) {
            last_rv = last_rv.max(rv);
        }
        if send(e).await.is_err() {
            return;
        }
    }
    if w.initial_events == Some(true) && w.bookmarks {
        let b = json!({"type": "BOOKMARK", "object": {
            "kind": w.target.rt.kind, "apiVersion": w.target.rt.api_version(),
            "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {INITIAL_EVENTS_END: "true"}},
        }});
        if send(b).await.is_err() {
            return;
        }
    }
    let mut changed = false;
    let bookmark_at = deadline.checked_sub(Duration::from_secs(2)).unwrap_or(deadline);
    let mut bookmarked = false;
    loop {
        let wake = if w.bookmarks && !bookmarked { bookmark_at.min(deadline) } else { deadline };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
                bookmarked = true;
                let rv = { server.store().rv };
                if changed || { server.store().changed_since(&w.target.rt.key(), start_rv) } {
                    let b = json!({"type": "BOOKMARK", "object": {
                        "kind": w.target.rt.kind, "apiVersion": w.target.rt.api_version(),
                        "metadata": {"resourceVersion": rv.max(last_rv).to_string()},
                    }});
                    if send(b).await.is_err() { return; }
                }
            }
            r = rx.recv() => match r {
                Ok(e) => {
                    if e.rv <= last_rv { continue; }
                    if w.in_scope(&e) { changed = true; }
                    if let Some(v) = w.translate(&e) {
                        last_rv = e.rv;
                        if send(v).await.is_err() { return; }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tx.closed() => return,
        }
    }
}
