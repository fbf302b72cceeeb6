//! The CRDs: checked in and current, structural, CEL that compiles, Helm chart in step.

use crate::support;
use lifeline::schema::structural;
use serde_json::Value;
use std::collections::BTreeMap;

fn checked_in(dir: &str) -> BTreeMap<String, String> {
    std::fs::read_dir(support::path(dir))
        .unwrap_or_else(|e| panic!("{dir} is missing ({e}): run `make crds`"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

fn generated() -> BTreeMap<String, String> {
    lifeline::cli::crd_files().unwrap().into_iter().collect()
}

fn assert_same(dir: &str) {
    let want = generated();
    let have = checked_in(dir);
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&have), names(&want), "{dir} holds other files than the Rust types generate: run `make crds`");
    for (name, yaml) in &want {
        assert!(
            have[name] == *yaml,
            "{dir}/{name} differs from the Rust types in src/api/: run `make crds` and commit the result"
        );
    }
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    assert_same("crds");
}

#[test]
fn helm_chart_crds_match_crds_dir() {
    assert_same("charts/lifeline/files/crds");
}

fn schemas() -> Vec<(String, Value)> {
    lifeline::api::crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap();
            let v = &crd.spec.versions[0];
            let schema = serde_json::to_value(v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap();
            (name, schema)
        })
        .collect()
}

#[test]
fn every_schema_is_structural_and_every_cel_rule_compiles() {
    for (name, schema) in schemas() {
        let problems = structural::check(&schema);
        assert!(problems.is_empty(), "{name} would be rejected by the API server:\n{}", problems.join("\n"));
    }
}

#[test]
fn every_crd_has_the_conventions_users_expect() {
    for crd in lifeline::api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(crd.spec.group, "lifeline.io", "{name}");
        assert!(
            crd.spec.names.categories.as_ref().is_some_and(|c| c.contains(&"lifeline".to_string())),
            "{name}: category"
        );
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{name}: short name");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name}: status subresource");
        let columns: Vec<&str> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(columns.contains(&"Age"), "{name}: Age column");
        let schema = serde_json::to_value(v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap();
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{name}: conditions keyed by type");
        assert!(
            schema["properties"]["status"]["properties"]["observedGeneration"].is_object(),
            "{name}: observedGeneration"
        );
    }
}

/// `kubectl explain` shows descriptions: every property of every kind must have one.
#[test]
fn every_field_is_documented() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                walk(v, &p, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    for (name, schema) in schemas() {
        let mut missing = Vec::new();
        walk(&schema["properties"]["spec"], "spec", &mut missing);
        walk(&schema["properties"]["status"], "status", &mut missing);
        assert!(missing.is_empty(), "{name}: fields without a doc comment: {missing:?}");
    }
}

/// The checker itself must catch what the API server refuses; otherwise the test above
/// proves nothing.
#[test]
fn structural_checker_rejects_non_structural_schemas() {
    let cases = [
        (r#"{"type":"object","properties":{"spec":{"description":"no type"}}}"#, "Required value"),
        (r#"{"type":"object","properties":{"a":{"type":"string","enum":["x",1]}}}"#, "enum"),
        (
            r#"{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"string"}},"additionalProperties":{"type":"string"}}}}"#,
            "mutually exclusive",
        ),
        (r#"{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"integer"}]}}}"#, "anyOf[0].type"),
        (r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/x"}}}"##, "$ref"),
        (
            r#"{"type":"object","properties":{"a":{"type":"string","x-kubernetes-validations":[{"rule":"self ==","message":"m"}]}}}"#,
            "compilation failed",
        ),
        (
            r#"{"type":"object","properties":{"l":{"type":"array","items":{"type":"object","properties":{"n":{"type":"string"}}},"x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["n"]}}}"#,
            "must be required or have a default",
        ),
        (
            r#"{"type":"object","properties":{"l":{"type":"array","items":{"type":"string","x-kubernetes-validations":[{"rule":"self == oldSelf"}]}}}}"#,
            "oldSelf cannot be used here",
        ),
        (r#"{"type":"object","properties":{"a":{"type":"integer","default":"x"}}}"#, "default"),
        (
            r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"string"},"uniqueItems":true}}}"#,
            "uniqueItems",
        ),
    ];
    for (schema, expected) in cases {
        let problems = structural::check(&serde_json::from_str(schema).unwrap()).join("\n");
        assert!(
            problems.contains(expected),
            "schema {schema}\nexpected a problem containing {expected:?}, got:\n{problems}"
        );
    }
}
