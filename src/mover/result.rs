//! What a data-path run reports: written as JSON by the CLI (`--result-file`, and stdout
//! off a terminal), read back by the controllers from a mover Job.

use crate::repo::RepoError;
use crate::repo::format::Summary;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result of one command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MoverResult {
    /// Whether the command did what it was asked.
    pub ok: bool,
    /// The command (`backup`, `restore`, `copy`, …).
    pub command: String,
    /// Wall-clock seconds, for successful runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MoverError>,
    /// The command's figures (see the typed accessors); present on success, and on
    /// failures that have something to report (what `verify` found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A failure, as a controller needs it: a stable category (metrics labels, exit codes,
/// condition reasons), the message, what to do about it, and whether a retry can help.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MoverError {
    pub category: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
    #[serde(default)]
    pub retryable: bool,
}

/// What `backup` reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupFigures {
    /// The restore point's id (hex).
    pub id: String,
    pub summary: Summary,
    #[serde(default)]
    pub uploaded_bytes: u64,
    #[serde(default)]
    pub requests: u64,
}

/// The most a container's termination message holds (the kubelet cuts the rest).
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// A result (as JSON) made to fit in `limit` bytes, so that it survives the trip through
/// a termination message whole: long lists in its figures are cut to their first items
/// and long strings shortened (with `"truncated": true`); if that is not enough, the
/// figures go and the outcome and error stay.
pub fn fit(value: &Value, limit: usize) -> Value {
    let size = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if size(value) <= limit {
        return value.clone();
    }
    fn shrink(v: &mut Value) {
        match v {
            Value::Array(a) => {
                a.truncate(3);
                a.iter_mut().for_each(shrink);
            }
            Value::Object(o) => o.values_mut().for_each(shrink),
            Value::String(s) if s.len() > 200 => {
                let cut: String = s.chars().take(200).collect();
                *s = format!("{cut}…");
            }
            _ => {}
        }
    }
    let mut v = value.clone();
    if let Some(r) = v.get_mut("result") {
        shrink(r);
    }
    if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
        for (k, max) in [("message", 1500), ("hint", 500)] {
            if let Some(Value::String(s)) = e.get_mut(k)
                && s.len() > max
            {
                *s = format!("{}…", s.chars().take(max).collect::<String>());
            }
        }
    }
    v["truncated"] = Value::Bool(true);
    if size(&v) > limit
        && let Some(o) = v.as_object_mut()
    {
        o.remove("result");
    }
    v
}

impl MoverResult {
    pub fn success(command: &str, result: Value, seconds: f64) -> Self {
        MoverResult { ok: true, command: command.into(), seconds: Some(seconds), error: None, result: Some(result) }
    }

    pub fn failure(command: &str, error: MoverError, result: Option<Value>) -> Self {
        MoverResult { ok: false, command: command.into(), seconds: None, error: Some(error), result }
    }

    /// Reads a result; a malformed one is an error naming what is wrong, so that a
    /// Job that died mid-write is never taken for a success.
    pub fn parse(text: &str) -> Result<Self, String> {
        let r: MoverResult = serde_json::from_str(text).map_err(|e| format!("unreadable mover result: {e}"))?;
        if r.ok && r.error.is_some() {
            return Err("unreadable mover result: ok with an error".into());
        }
        if !r.ok && r.error.is_none() {
            return Err("unreadable mover result: failed without an error".into());
        }
        Ok(r)
    }

    /// The figures of a successful backup.
    pub fn backup(&self) -> Option<BackupFigures> {
        if !self.ok || self.command != "backup" {
            return None;
        }
        serde_json::from_value(self.result.clone()?).ok()
    }
}

impl MoverError {
    /// The error of a failed command, classified by what it is.
    pub fn of(e: &anyhow::Error) -> Self {
        if let Some(r) = e.downcast_ref::<RepoError>() {
            return Self::new(r.category(), e, r.hint(), r.retryable());
        }
        if let Some(s) = e.downcast_ref::<StoreError>() {
            return Self::new(s.category(), e, s.hint(), s.retryable());
        }
        Self::new("Error", e, "", false)
    }

    pub fn new(category: &str, e: &anyhow::Error, hint: &str, retryable: bool) -> Self {
        MoverError { category: category.into(), message: message_of(e), hint: hint.into(), retryable }
    }
}

/// An error with its causes, each said once (a cause already in the message is not
/// repeated).
pub fn message_of(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out = format!("{out}: {c}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_large_result_is_cut_to_fit_a_termination_message_and_still_parses() {
        let bad: Vec<serde_json::Value> =
            (0..500).map(|i| serde_json::json!({"pack": format!("{i:064}"), "detail": "missing"})).collect();
        let r = super::MoverResult::failure(
            "verify",
            super::MoverError {
                category: "Damaged".into(),
                message: "x".repeat(5000),
                hint: "h".into(),
                retryable: false,
            },
            Some(serde_json::json!({"packsChecked": 10, "badBlobs": bad})),
        );
        let v = serde_json::to_value(&r).unwrap();
        let fitted = super::fit(&v, super::TERMINATION_MESSAGE_LIMIT);
        let text = serde_json::to_string(&fitted).unwrap();
        assert!(text.len() <= super::TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let back = super::MoverResult::parse(&text).unwrap();
        assert_eq!(back.error.unwrap().category, "Damaged");
        assert_eq!(back.result.unwrap()["packsChecked"], 10);
        let small = serde_json::json!({"ok": true, "command": "init"});
        assert_eq!(super::fit(&small, 4096), small, "a small result is left alone");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn a_result_round_trips_and_a_broken_one_is_never_a_success() {
        let ok = MoverResult::success(
            "backup",
            json!({"id": "ab", "summary": {"files": 2, "dirs": 1, "unchangedFiles": 0, "bytes": 10, "bytesRead": 10,
                   "newBytes": 10, "storedBytes": 12, "durationMs": 5}, "uploadedBytes": 12, "requests": 3}),
            0.5,
        );
        let back = MoverResult::parse(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
        assert_eq!(back.backup().unwrap().summary.new_bytes, 10);
        let e = anyhow::Error::new(RepoError::NotInitialized { url: "s3://b/p".into() });
        let failed = MoverResult::failure("backup", MoverError::of(&e), None);
        let text = serde_json::to_string(&failed).unwrap();
        let back = MoverResult::parse(&text).unwrap();
        let err = back.error.unwrap();
        assert_eq!((err.category.as_str(), err.retryable), ("NotInitialized", false));
        assert_eq!(err.message, "no repository at s3://b/p");
        assert!(!err.hint.is_empty() && !err.hint.contains("lifeline "), "hints name no command: {}", err.hint);
        assert!(MoverResult::parse(r#"{"ok": true, "command": "backup", "resu"#).is_err());
        assert!(MoverResult::parse(r#"{"ok": false, "command": "backup"}"#).is_err());
    }
}
