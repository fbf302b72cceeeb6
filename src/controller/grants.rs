//! Namespace boundaries: what reaches a namespace through Lifeline (README, "Namespace
//! boundaries").
//!
//! A Lifeline object acts on its own namespace: its restore points, locations, Secrets
//! and workloads are those of its namespace. Restore points of namespace `S`, or
//! RestorePlans of namespace `P`, reach another namespace `N` only when a cluster
//! administrator granted it, explicitly and visibly, in one of two places:
//!
//! - the annotation `lifeline.io/restore-from` on Namespace `N`: the namespaces (comma-
//!   separated, `*` for any) whose restore points and RestorePlans may restore into `N`;
//! - the operator's `--grant N=S1,S2` (chart value `grants`), which also covers a namespace
//!   that does not exist yet (a restore may then create it).
//!
//! Namespaces are cluster-scoped objects: a team whose rights stop at its namespaces
//! cannot annotate one, so it cannot grant itself anything.
//!
//! The operator's own cloud identity is not the teams' either: a BackupLocation without
//! `spec.credentialsSecret` is reached with it (environment, web identity, instance
//! metadata) only in the namespaces of the operator's `--ambient-credentials` (chart
//! value `ambientCredentials`); elsewhere its requests go unsigned, so a team cannot
//! borrow the operator's rights to a bucket it was not given credentials for.

use super::{Context, Error, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use std::collections::{BTreeMap, BTreeSet};

/// The annotation on a Namespace that names who may restore into it.
pub const ANNOTATION_GRANT: &str = "lifeline.io/restore-from";

/// Grants of the operator's settings (`--grant`): target namespace -> sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<String, BTreeSet<String>>);

impl Grants {
    /// Parses `--grant` values, each `TARGET=SOURCE[,SOURCE...]` (a source may be `*`).
    pub fn parse(values: &[String]) -> std::result::Result<Grants, String> {
        let mut out = Grants::default();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            let (target, sources) = v
                .split_once('=')
                .ok_or_else(|| format!("--grant {v:?}: expected TARGET=SOURCE[,SOURCE...] (namespace names)"))?;
            let target = target.trim();
            check_name(v, target)?;
            let set = out.0.entry(target.to_string()).or_default();
            for s in sources.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if s != "*" {
                    check_name(v, s)?;
                }
                set.insert(s.to_string());
            }
            if set.is_empty() {
                return Err(format!("--grant {v:?}: names no source namespace"));
            }
        }
        Ok(out)
    }

    fn lists(&self, into: &str, from: &str) -> bool {
        self.0.get(into).is_some_and(|s| s.contains(from) || s.contains("*"))
    }
}

fn check_name(arg: &str, name: &str) -> std::result::Result<(), String> {
    if crate::api::common::is_dns_label(name) {
        Ok(())
    } else {
        Err(format!("--grant {arg:?}: {name:?} is not a namespace name (a DNS label)"))
    }
}

/// A set of namespaces from the operator's settings (`*`: every namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces(BTreeSet<String>);

impl Namespaces {
    /// Parses the values of option `flag` (namespace names, or `*`).
    pub fn parse(flag: &str, values: &[String]) -> std::result::Result<Namespaces, String> {
        let mut out = BTreeSet::new();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if v != "*" && !crate::api::common::is_dns_label(v) {
                return Err(format!("{flag}: {v:?} is not a namespace name (a DNS label) or *"));
            }
            out.insert(v.to_string());
        }
        Ok(Namespaces(out))
    }

    pub fn contains(&self, ns: &str) -> bool {
        self.0.contains(ns) || self.0.contains("*")
    }
}

/// Whether an annotation value (comma-separated namespaces, or `*`) names `from`.
pub fn annotation_lists(value: &str, from: &str) -> bool {
    value.split(',').map(str::trim).any(|s| s == from || s == "*")
}

/// Whether restore points or RestorePlans of namespace `from` may reach namespace `into`:
/// `None` if they may, else why not (naming the grant that is missing).
pub async fn refusal(ctx: &Context, into: &str, from: &str) -> Result<Option<String>> {
    if into == from || ctx.config.grants.lists(into, from) {
        return Ok(None);
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let ns = api.get_opt(into).await.map_err(Error::kube(format!("read Namespace {into}")))?;
    Ok(match ns {
        None => Some(format!(
            "namespace {into} does not exist, and no grant of the operator (--grant {into}={from}, chart value grants) lets {from} create it"
        )),
        Some(ns) => {
            let value = ns.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_GRANT));
            if value.is_some_and(|v| annotation_lists(v, from)) {
                None
            } else {
                Some(format!(
                    "namespace {into} does not grant {from} (annotation {ANNOTATION_GRANT} on namespace {into} naming {from}, set by a cluster administrator, or the operator's --grant {into}={from})"
                ))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_name_what_is_wrong() {
        let g = Grants::parse(&["staging=prod, qa".into(), "sandbox=*".into(), " ".into()]).unwrap();
        assert!(g.lists("staging", "prod") && g.lists("staging", "qa") && !g.lists("staging", "dev"));
        assert!(g.lists("sandbox", "anything") && !g.lists("prod", "staging"));
        for (bad, says) in [
            ("staging", "expected TARGET=SOURCE"),
            ("staging=", "names no source"),
            ("Staging=prod", "\"Staging\" is not a namespace name"),
            ("staging=prod,kube_system", "\"kube_system\" is not a namespace name"),
        ] {
            let e = Grants::parse(&[bad.into()]).unwrap_err();
            assert!(e.contains(says) && e.contains("--grant"), "{bad}: {e}");
        }
    }

    #[test]
    fn namespace_sets_parse_and_name_what_is_wrong() {
        let n = Namespaces::parse("--ambient-credentials", &["platform".into(), " ".into()]).unwrap();
        assert!(n.contains("platform") && !n.contains("tenant-a"));
        assert!(Namespaces::parse("--x", &["*".into()]).unwrap().contains("anything"));
        assert!(!Namespaces::default().contains("platform"));
        let e = Namespaces::parse("--ambient-credentials", &["Platform".into()]).unwrap_err();
        assert!(e.contains("--ambient-credentials") && e.contains("\"Platform\""), "{e}");
    }

    #[test]
    fn the_annotation_lists_namespaces_or_everyone() {
        assert!(annotation_lists("a, b", "b"));
        assert!(annotation_lists("*", "b"));
        assert!(!annotation_lists("ab,c", "a"));
        assert!(!annotation_lists("", "a"));
    }
}
