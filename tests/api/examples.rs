//! Every example a user would copy is valid: it decodes into our types (or the
//! Kubernetes types for built-in kinds) and passes schema, CEL and semantic validation.

use crate::support;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Namespace, Secret},
};
use lifeline::admission;
use lifeline::api::{self, Validate};
use lifeline::cli::manifests::{Document, expand, read_documents};
use serde_json::Value;
use std::collections::BTreeSet;

fn examples() -> Vec<Document> {
    let files = expand(&[support::path("manifests/examples")]).unwrap();
    assert!(files.len() >= 5, "expected the five example files, found {files:?}");
    files.iter().flat_map(|f| read_documents(f).unwrap()).collect()
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Document) -> T {
    serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{} in {}: {e}", doc.describe(), doc.file.display()))
}

#[test]
fn every_example_decodes_and_validates() {
    let mut kinds = BTreeSet::new();
    for doc in examples() {
        let kind = doc.value["kind"].as_str().unwrap().to_string();
        let place = format!("{} in {}", doc.describe(), doc.file.display());
        match kind.as_str() {
            "Namespace" => drop(decode::<Namespace>(&doc)),
            "Secret" => drop(decode::<Secret>(&doc)),
            "StatefulSet" => drop(decode::<StatefulSet>(&doc)),
            "Service" => drop(decode::<k8s_openapi::api::core::v1::Service>(&doc)),
            _ => {
                let admitted = admission::admit(&doc.value, None).unwrap_or_else(|e| panic!("{place}: {e}"));
                let errors = match kind.as_str() {
                    "BackupLocation" => decode::<api::BackupLocation>(&doc).validate(None),
                    "BackupPolicy" => decode::<api::BackupPolicy>(&doc).validate(None),
                    "RestorePlan" => decode::<api::RestorePlan>(&doc).validate(None),
                    other => panic!("{place}: unexpected kind {other}"),
                };
                assert!(errors.is_empty(), "{place}: {errors:?}");
                // Defaults the API server would add do not change the meaning.
                assert_eq!(admitted["spec"].as_object().map(|_| ()), Some(()), "{place}");
            }
        }
        kinds.insert(kind);
    }
    for k in ["BackupLocation", "BackupPolicy", "RestorePlan", "StatefulSet", "Secret"] {
        assert!(kinds.contains(k), "no example of {k}");
    }
}

/// The examples fit together: every location, key Secret and credentials Secret that is
/// referred to is defined in some example, so copying them gives a working set.
#[test]
fn examples_refer_only_to_objects_they_define() {
    let docs = examples();
    let defined = |kind: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| d.value["kind"] == kind)
            .map(|d| d.value["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (locations, secrets) = (defined("BackupLocation"), defined("Secret"));
    for doc in &docs {
        let place = doc.describe();
        let v = &doc.value;
        let mut need_locations: Vec<&Value> = Vec::new();
        let mut need_secrets: Vec<&Value> = Vec::new();
        match v["kind"].as_str().unwrap() {
            "BackupPolicy" => {
                need_locations.extend(v["spec"]["locations"].as_array().unwrap().iter().map(|l| &l["name"]));
                need_secrets.push(&v["spec"]["encryption"]["keySecret"]["name"]);
            }
            "RestorePlan" => need_locations.extend(v["spec"]["source"]["locations"].as_array().unwrap()),
            "BackupLocation" => need_secrets.push(&v["spec"]["credentialsSecret"]["name"]),
            _ => {}
        }
        for l in need_locations {
            assert!(
                locations.contains(l.as_str().unwrap()),
                "{place} refers to BackupLocation {l} that no example defines"
            );
        }
        for s in need_secrets.into_iter().filter(|s| !s.is_null()) {
            assert!(secrets.contains(s.as_str().unwrap()), "{place} refers to Secret {s} that no example defines");
        }
    }
}

#[test]
fn the_postgres_example_is_what_the_readme_promises() {
    let doc = examples().into_iter().find(|d| d.describe() == "BackupPolicy/orders-db").unwrap();
    let policy: api::BackupPolicy = decode(&doc);
    assert_eq!(policy.spec.schedule, "*/15 * * * *");
    assert_eq!(policy.spec.consistency.mode, api::policy::ConsistencyMode::Application);
    let regions: BTreeSet<_> = policy.spec.locations.iter().map(|l| l.name.as_str()).collect();
    assert!(regions.contains("s3-eu-central") && regions.contains("s3-us-east"));
}
