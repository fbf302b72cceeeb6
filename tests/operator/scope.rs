//! `--watch-namespaces`: an operator scoped to some namespaces reconciles their Lifeline
//! objects and never touches those of another namespace.

use super::{Env, system_clock};
use kube::api::Api;
use lifeline::api::BackupLocation;
use lifeline::sim::Options as SimOptions;

fn location(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: lifeline.io/v1alpha1\nkind: BackupLocation\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  url: s3://lifeline/scope-{ns}-{name}\n  endpoint: http://127.0.0.1:9\n  forcePathStyle: true\n"
    )
}

#[test]
fn an_operator_watching_some_namespaces_leaves_the_others_alone() {
    let mut env = Env::start(SimOptions::default());
    env.apply(&location("team-a", "here"));
    env.apply(&location("team-b", "here"));
    env.start_operator_with(system_clock(), |c| c.watch_namespaces = vec!["team-a".into()]);
    let api = |ns: &str| Api::<BackupLocation>::namespaced(env.client.clone(), ns);
    let checked = |ns: &'static str, name: &'static str| {
        let a = api(ns);
        env.eventually(60, &format!("{ns}/{name} to be checked"), move || {
            let a = a.clone();
            async move { a.get(name).await.ok()?.status.filter(|s| !s.conditions.is_empty()).map(|_| ()) }
        })
    };
    checked("team-a", "here");
    // Objects made later: team-b's first, then team-a's; once team-a's is checked, the
    // operator has long had team-b's to see, had it been looking.
    env.apply(&location("team-b", "later"));
    env.apply(&location("team-a", "later"));
    checked("team-a", "later");
    for name in ["here", "later"] {
        let l = env.block_on(api("team-b").get(name)).unwrap();
        assert!(l.status.is_none(), "team-b/{name} was reconciled by an operator scoped to team-a: {:?}", l.status);
    }
    let (ok, _, err) = crate::sim::kubectl(&env.kubeconfig, &["get", "jobs", "-n", "team-b", "-o", "name"], None);
    assert!(ok, "{err}");
}
