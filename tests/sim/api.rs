//! The simulated API server through a real `kube::Client`, written from the real server's
//! documented behaviour (TESTING.md §4): watch and its 410, bookmarks, paging and
//! selectors, the four patch types, server-side apply with managers and force, the status
//! subresource and generation, kube's event recorder, Leases by server-side apply.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use lifeline::sim::{Cluster, Options, Profile};
use serde_json::json;
use std::time::Duration;

fn with_client(f: impl AsyncFnOnce(Client)) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = Cluster::start(Options { profile: Profile::Bare, ..Default::default() }).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
        f(client).await;
    });
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn watch_streams_changes_from_a_version_and_expires_old_ones() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        cms.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
        cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "w"}}))).await.unwrap();
        cms.delete("a", &Default::default()).await.unwrap();
        let mut stream = cms.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
        let mut kinds = Vec::new();
        while let Some(ev) = stream.try_next().await.unwrap() {
            kinds.push(match ev {
                WatchEvent::Added(o) => format!("ADDED {}", o.data.unwrap()["k"]),
                WatchEvent::Modified(o) => format!("MODIFIED {}", o.data.unwrap()["k"]),
                WatchEvent::Deleted(_) => "DELETED".into(),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("{e:?}"),
            });
            if kinds.len() == 3 {
                break;
            }
        }
        assert_eq!(kinds, ["ADDED v", "MODIFIED w", "DELETED"]);

        // A version etcd has compacted away: an ERROR event with 410 Expired.
        let mut old = cms.watch(&WatchParams::default().timeout(5), "1").await.unwrap().boxed();
        match old.try_next().await.unwrap() {
            Some(WatchEvent::Error(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
                assert!(e.message.starts_with("too old resource version: 1 ("), "{}", e.message);
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }

        // Bookmarks (kube asks for them): before the watch times out, once something
        // happened in the resource since the watch began, with the latest resourceVersion.
        let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let wp = WatchParams::default().timeout(3);
        let mut s = cms.watch(&wp, &rv).await.unwrap().boxed();
        cms.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
        let mut bookmark = None;
        while let Some(ev) = s.try_next().await.unwrap() {
            if let WatchEvent::Bookmark(b) = ev {
                bookmark = Some(b.metadata.resource_version);
                break;
            }
        }
        assert!(bookmark.is_some_and(|v| !v.is_empty()), "no bookmark before the watch timed out");
    });
}

/// Streaming lists (WatchList, on by default since 1.32; client-go 1.35 informers use
/// them): the current state as ADDED, a bookmark annotated as the end of the initial
/// events, then changes; the option combinations the real validation refuses, refused
/// with its words.
#[test]
fn streaming_lists_send_the_state_then_a_bookmark_that_ends_it() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        for n in ["s1", "s2"] {
            cms.create(&PostParams::default(), &cm(n, json!({"set": "stream"}))).await.unwrap();
        }
        let wp = WatchParams::streaming_lists().labels("set=stream").timeout(5);
        let mut s = cms.watch(&wp, "").await.unwrap().boxed();
        let mut added = Vec::new();
        loop {
            match s.try_next().await.unwrap().expect("the watch ended before its initial-events bookmark") {
                WatchEvent::Added(o) => added.push(o.name_any()),
                WatchEvent::Bookmark(b) => {
                    assert_eq!(
                        b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str),
                        Some("true")
                    );
                    assert!(!b.metadata.resource_version.is_empty());
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(added, ["s1", "s2"]);
        cms.create(&PostParams::default(), &cm("s3", json!({"set": "stream"}))).await.unwrap();
        match s.try_next().await.unwrap() {
            Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "s3"),
            other => panic!("expected s3 ADDED, got {other:?}"),
        }

        let raw = |q: &str| {
            let req = axum::http::Request::get(format!("/api/v1/namespaces/default/configmaps?watch=true&{q}"))
                .body(Vec::new())
                .unwrap();
            client.request_text(req)
        };
        for (q, msg) in [
            (
                "resourceVersionMatch=NotOlderThan",
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ),
            (
                "sendInitialEvents=true",
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ),
            (
                "sendInitialEvents=true&resourceVersionMatch=Exact",
                r#"Unsupported value: "Exact": supported values: "NotOlderThan""#,
            ),
        ] {
            let st = status_of(raw(q).await.unwrap_err());
            assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{q}");
            assert!(st.message.contains(msg), "{q}: {}", st.message);
        }
        // sendInitialEvents=false: no initial state, only what changes from now on.
        let quiet =
            raw("sendInitialEvents=false&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1");
        let text = quiet.await.unwrap();
        assert!(!text.contains("ADDED"), "{text}");
    });
}

#[test]
fn lists_page_with_limit_and_continue_and_filter_by_selectors() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        for (i, tier) in ["web", "web", "db", "web", "db"].iter().enumerate() {
            cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({"tier": tier}))).await.unwrap();
        }
        let lp = ListParams::default().labels("tier").limit(2);
        let first = cms.list(&lp).await.unwrap();
        let names = |l: &kube::core::ObjectList<ConfigMap>| l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&first), ["c0", "c1"]);
        assert_eq!(first.metadata.remaining_item_count, None, "a selective list does not count what is left");
        let token = first.metadata.continue_.clone().unwrap();
        let second = cms.list(&lp.clone().continue_token(&token)).await.unwrap();
        assert_eq!(names(&second), ["c2", "c3"]);
        let third = cms.list(&lp.clone().continue_token(&second.metadata.continue_.unwrap())).await.unwrap();
        assert_eq!(names(&third), ["c4"]);
        assert!(third.metadata.continue_.is_none_or(|c| c.is_empty()));

        let db = cms.list(&ListParams::default().labels("tier in (db)")).await.unwrap();
        assert_eq!(names(&db), ["c2", "c4"]);
        let not_web = cms.list(&ListParams::default().labels("tier,tier!=web")).await.unwrap();
        assert_eq!(names(&not_web), ["c2", "c4"]);
        let by_name = cms.list(&ListParams::default().fields("metadata.name=c3")).await.unwrap();
        assert_eq!(names(&by_name), ["c3"]);
        let e = status_of(cms.list(&ListParams::default().labels("tier in web")).await.unwrap_err());
        assert_eq!(e.code, 400);
    });
}

fn sts() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "s"},
        "spec": {"replicas": 0, "serviceName": "s", "selector": {"matchLabels": {"app": "s"}},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "helper", "image": "helper:1"}]}}},
    }))
    .unwrap()
}

fn containers(s: &StatefulSet) -> Vec<(String, String)> {
    s.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap()))
        .collect()
}

#[test]
fn the_four_patch_types_and_generation() {
    with_client(async |client| {
        let sets: Api<StatefulSet> = Api::namespaced(client, "default");
        let created = sets.create(&PostParams::default(), &sts()).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        let pp = PatchParams::default();

        // Strategic merge: containers merge by name.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
        let s = sets.patch("s", &pp, &Patch::Strategic(p)).await.unwrap();
        assert_eq!(containers(&s), [("app".into(), "app:2".into()), ("helper".into(), "helper:1".into())]);
        assert_eq!(s.metadata.generation, Some(2));

        // JSON merge patch: a list is replaced whole.
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "only:1"}]}}}});
        let s = sets.patch("s", &pp, &Patch::Merge(p)).await.unwrap();
        assert_eq!(containers(&s), [("only".into(), "only:1".into())]);

        // JSON patch with a failing test: nothing changes, 422.
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/replicas", "value": 5},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
        ]))
        .unwrap();
        let e = status_of(sets.patch("s", &pp, &Patch::<()>::Json(jp)).await.unwrap_err());
        assert_eq!(e.code, 422);
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/replicas", "value": 0},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
        ]))
        .unwrap();
        let s = sets.patch("s", &pp, &Patch::<()>::Json(jp)).await.unwrap();
        assert_eq!(s.spec.unwrap().replicas, Some(2));

        // Labels are metadata: no new generation.
        let before = sets.get("s").await.unwrap().metadata.generation;
        let s = sets.patch("s", &pp, &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await.unwrap();
        assert_eq!(s.metadata.generation, before);

        // The status subresource changes status only, the main resource never does.
        let st = json!({"spec": {"replicas": 9}, "status": {"replicas": 7, "availableReplicas": 0}});
        let s = sets.patch_status("s", &pp, &Patch::Merge(st)).await.unwrap();
        assert_eq!((s.spec.as_ref().unwrap().replicas, s.status.as_ref().unwrap().replicas), (Some(2), 7));
        // (The StatefulSet controller keeps writing the real count meanwhile, so the check
        // is that a value only this patch could have set is not there.)
        let s = sets.patch("s", &pp, &Patch::Merge(json!({"status": {"replicas": 1000}}))).await.unwrap();
        assert_ne!(s.status.unwrap().replicas, 1000);
    });
}

#[test]
fn server_side_apply_tracks_managers_conflicts_and_force() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let a = PatchParams::apply("manager-a");
        let b = PatchParams::apply("manager-b");
        let body = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
        cms.patch("ssa", &a, &Patch::Apply(body(json!({"shared": "a", "mine": "a"})))).await.unwrap();
        let e = status_of(cms.patch("ssa", &b, &Patch::Apply(body(json!({"shared": "b"})))).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert!(e.message.contains(r#"conflict with "manager-a": .data.shared"#), "{}", e.message);

        let forced = cms.patch("ssa", &b.clone().force(), &Patch::Apply(body(json!({"shared": "b"})))).await.unwrap();
        assert_eq!(forced.data.as_ref().unwrap()["shared"], "b");
        let managers: Vec<(String, String)> = forced
            .managed_fields()
            .iter()
            .map(|m| (m.manager.clone().unwrap(), m.operation.clone().unwrap()))
            .collect();
        assert_eq!(managers, [("manager-a".into(), "Apply".into()), ("manager-b".into(), "Apply".into())]);

        // A manager that stops applying a field it alone owns removes it.
        let left = cms.patch("ssa", &a, &Patch::Apply(body(json!({})))).await.unwrap();
        let data = left.data.unwrap();
        assert!(!data.contains_key("mine"));
        assert_eq!(data["shared"], "b");
    });
}

#[test]
fn kube_event_recorder_and_lease_apply_work_as_on_a_real_cluster() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let target = cms.create(&PostParams::default(), &cm("target", json!({}))).await.unwrap();
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "lifeline".into(), instance: Some("lifeline-0".into()) },
        );
        let ev = Event {
            type_: EventType::Normal,
            reason: "BackupStarted".into(),
            note: Some("backup of target started".into()),
            action: "Backup".into(),
            secondary: None,
        };
        recorder.publish(&ev, &target.object_ref(&())).await.unwrap();
        recorder.publish(&ev, &target.object_ref(&())).await.unwrap();
        // The same Event read through the core API, with its series.
        let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
        let list = core.list(&ListParams::default().fields("involvedObject.name=target")).await.unwrap();
        assert_eq!(list.items.len(), 1);
        let e = &list.items[0];
        assert_eq!(e.reason.as_deref(), Some("BackupStarted"));
        assert_eq!(e.message.as_deref(), Some("backup of target started"));
        assert_eq!(e.reporting_component.as_deref(), Some("lifeline"));
        assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));

        // Leader election's lease: taken by apply, a contender conflicts until it forces.
        let leases: Api<Lease> = Api::namespaced(client, "default");
        let lease = |holder: &str| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
        };
        leases.patch("leader", &PatchParams::apply("a"), &Patch::Apply(lease("a"))).await.unwrap();
        let e =
            status_of(leases.patch("leader", &PatchParams::apply("b"), &Patch::Apply(lease("b"))).await.unwrap_err());
        assert_eq!(e.code, 409);
        let taken = leases.patch("leader", &PatchParams::apply("b").force(), &Patch::Apply(lease("b"))).await.unwrap();
        assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));
        tokio::time::sleep(Duration::from_millis(1)).await;
    });
}

/// `kubectl get --watch` asks for Tables: each event's object is a one-row Table, the
/// column definitions only in the first (the real server's watch encoder).
#[test]
fn a_table_watch_sends_one_row_tables_with_the_columns_first() {
    with_client(async |client| {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        cms.create(&PostParams::default(), &cm("t1", json!({}))).await.unwrap();
        cms.create(&PostParams::default(), &cm("t2", json!({}))).await.unwrap();
        cms.delete("t1", &Default::default()).await.unwrap();
        let req = axum::http::Request::get(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
        let text = client.request_text(req).await.unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e["type"].as_str().unwrap(), e["object"]["rows"][0]["cells"][0].as_str().unwrap()))
            .collect();
        assert_eq!(seen, [("ADDED", "t1"), ("ADDED", "t2"), ("DELETED", "t1")], "{text}");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["object"]["kind"], "Table");
            assert_eq!(e["object"]["rows"].as_array().unwrap().len(), 1);
            assert_eq!(e["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata");
            let columns = &e["object"]["columnDefinitions"];
            if i == 0 {
                let names: Vec<&str> =
                    columns.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
                assert_eq!(names, ["Name", "Data", "Age"]);
            } else {
                assert!(columns.is_null(), "columns only in the first event: {e}");
            }
        }
    });
}
