//! Label selectors (equality and set based) and field selectors, with the server's
//! parse errors.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_req(part)?);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_req(p: &str) -> Result<Req, String> {
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Req::NotExists(k.into()));
    }
    for (op, set) in [(" notin ", false), (" in ", true)] {
        if let Some(i) = p.find(op) {
            let k = p[..i].trim();
            let rest = p[i + op.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: found '{rest}' expected: '('"))?;
            check_key(k)?;
            let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            for v in &vals {
                check_value(k, v)?;
            }
            return Ok(if set { Req::In(k.into(), vals) } else { Req::NotIn(k.into(), vals) });
        }
    }
    for (op, kind) in [("!=", 0), ("==", 1), ("=", 1)] {
        if let Some(i) = p.find(op) {
            let k = p[..i].trim();
            let v = p[i + op.len()..].trim();
            check_key(k)?;
            check_value(k, v)?;
            return Ok(if kind == 0 { Req::NotEq(k.into(), v.into()) } else { Req::Eq(k.into(), v.into()) });
        }
    }
    check_key(p)?;
    Ok(Req::Exists(p.into()))
}

fn check_key(k: &str) -> Result<(), String> {
    super::meta::qualified_name_errors(k)
        .first()
        .map_or(Ok(()), |e| Err(format!("unable to parse requirement: values[0][{k}]: Invalid value: {k:?}: {e}")))
        .and_then(|()| if k.is_empty() { Err("key cannot be empty".into()) } else { Ok(()) })
}

fn check_value(k: &str, v: &str) -> Result<(), String> {
    match super::meta::label_value_errors(v).first() {
        None => Ok(()),
        Some(e) => Err(format!("unable to parse requirement: values[0][{k}]: Invalid value: {v:?}: {e}")),
    }
}

/// A field selector: `a.b=v`, `a.b==v`, `a.b!=v`, comma separated.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// `allowed` are the fields this kind supports besides metadata.name/namespace.
    pub fn parse(s: &str, allowed: &[&str]) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some(i) = part.find("!=") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], true, &part[i + 1..])
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !["metadata.name", "metadata.namespace"].contains(&field) && !allowed.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let mut cur = obj;
            for p in field.split('.') {
                cur = &cur[p];
            }
            let actual = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *eq
        })
    }
}

/// Fields a kind can be selected on, besides `metadata.name` and `metadata.namespace`.
pub fn selectable_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "Job" => &["status.successful"],
        "PersistentVolumeClaim" | "PersistentVolume" => &[],
        _ => &[],
    }
}
