//! `lifeline validate`: run manifests through the admission chain offline.

use crate::admission;
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One document of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// Index of the document in its file (YAML `---` separated), from 0.
    pub index: usize,
    pub value: Value,
}

impl Document {
    /// `kind/name` for messages.
    pub fn describe(&self) -> String {
        let kind = self.value.get("kind").and_then(Value::as_str).unwrap_or("?");
        let name = self.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
        format!("{kind}/{name}")
    }
}

/// Reads every YAML document of a file, skipping empty ones.
pub fn read_documents(file: &Path) -> anyhow::Result<Vec<Document>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("failed to read {}", file.display()))?;
    let values: Vec<Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("failed to parse YAML in {}", file.display()))?;
    Ok(values
        .into_iter()
        .filter(|v| !v.is_null())
        .enumerate()
        .map(|(index, value)| Document { file: file.to_path_buf(), index, value })
        .collect())
}

/// Files to read: the paths given, with directories expanded to their `*.yaml`/`*.yml`.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("failed to list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Validates every Lifeline document in `paths`; other kinds are listed as skipped.
/// Returns the number of rejected documents.
pub fn validate(paths: &[PathBuf]) -> anyhow::Result<usize> {
    let mut rejected = 0;
    for file in expand(paths)? {
        for doc in read_documents(&file)? {
            let place = format!("{}[{}] {}", file.display(), doc.index, doc.describe());
            match admission::admit(&doc.value, None) {
                Ok(_) => println!("ok       {place}"),
                Err(admission::Rejection::UnknownKind { .. }) => {
                    println!("skipped  {place} (not a Lifeline kind)")
                }
                Err(e) => {
                    rejected += 1;
                    println!("invalid  {place}\n         {e}");
                }
            }
        }
    }
    Ok(rejected)
}
