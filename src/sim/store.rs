//! The simulated etcd: objects by resource, namespace and name; one increasing
//! resourceVersion counter; a window of recent changes for watches.

use super::registry::ResType;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many changes are kept for watches that start from a past resourceVersion.
const HISTORY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change of one object.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    /// Resource key (`group/plural`).
    pub res: String,
    pub namespace: String,
    pub typ: EventType,
    pub object: Value,
    /// The object before the change (for MODIFIED and DELETED).
    pub old: Option<Value>,
}

pub struct Store {
    pub rv: u64,
    pub types: Vec<Arc<ResType>>,
    objects: HashMap<String, BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Event>>,
    /// Changes up to this resourceVersion are no longer available to watches.
    pub compacted: u64,
    pub tx: broadcast::Sender<Arc<Event>>,
    /// The key service-account tokens are signed with (random per cluster).
    pub token_key: [u8; 32],
    /// The CA of the API server's serving certificate, when it serves HTTPS.
    pub ca_pem: Option<String>,
}

impl Store {
    pub fn new(types: Vec<Arc<ResType>>) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let token_key: [u8; 32] = super::meta::rand_bytes();
        Self {
            rv: 1,
            types,
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            tx,
            token_key,
            ca_pem: None,
        }
    }

    /// The served type for a group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResType>> {
        self.types.iter().find(|t| t.group == group && t.version == version && t.plural == plural).cloned()
    }

    pub fn group_known(&self, group: &str) -> bool {
        self.types.iter().any(|t| t.group == group)
    }

    pub fn get(&self, res: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(res)?.get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource, in key order (namespace, then name).
    pub fn list<'a>(&'a self, res: &str, ns: Option<&'a str>) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(res)
            .into_iter()
            .flat_map(move |m| m.iter().filter(move |((n, _), _)| ns.is_none_or(|ns| ns == n)).map(|(_, v)| v))
    }

    /// Objects of a resource as they were at resourceVersion `rv`, in key order: the
    /// current ones with every later change undone. `None` once `rv` is compacted away.
    pub fn list_at(&self, res: &str, ns: Option<&str>, rv: u64) -> Option<Vec<Value>> {
        if rv < self.compacted {
            return None;
        }
        let mut objs: BTreeMap<(String, String), Value> = self
            .objects
            .get(res)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for e in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if e.res != res || ns.is_some_and(|ns| ns != e.namespace) {
                continue;
            }
            let name = e.object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = (e.namespace.clone(), name);
            match (&e.typ, &e.old) {
                (EventType::Added, _) => {
                    objs.remove(&key);
                }
                (_, Some(old)) => {
                    objs.insert(key, old.clone());
                }
                (_, None) => {}
            }
        }
        Some(objs.into_values().collect())
    }

    /// Every object of a namespace, across resources (for namespace deletion).
    pub fn in_namespace(&self, ns: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (res, m) in &self.objects {
            for ((n, _), v) in m {
                if n == ns {
                    out.push((res.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// Every object of every resource (for the garbage collector).
    pub fn all(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.objects.iter().flat_map(|(res, m)| m.values().map(move |v| (res, v)))
    }

    /// Stores `obj` with a new resourceVersion; returns the stored object.
    pub fn put(&mut self, res: &str, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let old = self.objects.entry(res.to_string()).or_default().insert((ns.clone(), name), obj.clone());
        let typ = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.record(Event { rv: self.rv, res: res.into(), namespace: ns, typ, object: obj.clone(), old });
        obj
    }

    /// Removes an object; the DELETED event carries a new resourceVersion.
    pub fn remove(&mut self, res: &str, ns: &str, name: &str) -> Option<Value> {
        let mut old = self.objects.get_mut(res)?.remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let before = old.clone();
        old["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Event {
            rv: self.rv,
            res: res.into(),
            namespace: ns.into(),
            typ: EventType::Deleted,
            object: old.clone(),
            old: Some(before),
        });
        Some(old)
    }

    /// Drops every object of a resource (a deleted CRD's custom objects).
    pub fn drop_resource(&mut self, res: &str) {
        let keys: Vec<(String, String)> =
            self.objects.get(res).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for (ns, name) in keys {
            self.remove(res, &ns, &name);
        }
    }

    fn record(&mut self, e: Event) {
        let e = Arc::new(e);
        self.history.push_back(e.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        let _ = self.tx.send(e);
    }

    /// Forgets the change history up to now, as etcd compaction does.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Recorded changes of a resource after `rv`.
    pub fn since(&self, res: &str, rv: u64) -> Vec<Arc<Event>> {
        self.history.iter().filter(|e| e.rv > rv && e.res == res).cloned().collect()
    }

    /// The highest resourceVersion of a change to this resource after `rv`, if any.
    pub fn changed_since(&self, res: &str, rv: u64) -> bool {
        self.history.iter().rev().take_while(|e| e.rv > rv).any(|e| e.res == res)
    }
}
