//! `as=Table` responses, as `kubectl get` asks for them.

use super::api::Req;
use super::registry::ResType;
use serde_json::{Value, json};

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(rt: &ResType) -> Vec<(Value, Option<String>)> {
    let mut cols = vec![(
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0}),
        None,
    )];
    let printer = rt.crd.as_ref().and_then(|crd| {
        crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == rt.version.as_str())
            .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
    });
    match printer {
        Some(pc) => {
            // Declared columns are all there is: no Age unless the CRD declares it.
            for c in pc {
                let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
                let desc = c["description"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {path}"));
                cols.push((
                    json!({"name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or(""), "description": desc, "priority": c["priority"].as_i64().unwrap_or(0)}),
                    Some(path),
                ));
            }
        }
        None => cols.push((
            json!({"name": "Age", "type": "string", "format": "", "description": AGE_DESC, "priority": 0}),
            Some("age".into()),
        )),
    }
    cols
}

fn cell(obj: &Value, path: &str, custom: bool) -> Value {
    if path == "age" {
        return json!(age(obj["metadata"]["creationTimestamp"].as_str().unwrap_or_default()));
    }
    let mut cur = obj;
    for p in path.trim_start_matches('.').split('.') {
        cur = &cur[p];
    }
    if cur.is_null() && custom { Value::Null } else { cur.clone() }
}

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn table(rt: &ResType, items: &[Value], list_meta: Option<Value>, req: &Req) -> Value {
    let cols = columns(rt);
    let include = req.q("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|(def, p)| match p {
                    None => o["metadata"]["name"].clone(),
                    // Date columns are shown as an age, as the real server prints them.
                    Some(p) if def["type"] == "date" => match cell(o, p, true).as_str() {
                        Some(ts) => json!(age(ts)),
                        None => Value::Null,
                    },
                    Some(p) => cell(o, p, rt.is_custom()),
                })
                .collect();
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let meta = list_meta.unwrap_or_else(|| json!({"resourceVersion": items.first().map(|o| o["metadata"]["resourceVersion"].clone()).unwrap_or_default()}));
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": cols.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "rows": rows,
    })
}
