//! What reconcile asks of the API server, counted on the stateful fake: it
//! reads only its watch caches, so every request is a write, and a settled
//! Rollout (Healthy, or waiting at a pause) costs none. The caches are
//! refreshed from the fake before each reconcile, as the watches would.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gantry_tests::fixtures::{Cached, TestRollout as _, ingress_with, service};
use gantry_tests::kube_fake::{self, FakeApi};
use http::Method;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rollout_controller::reconcile::{Context, reconcile};
use rollout_controller::telemetry::Metrics;
use rollout_core::ops::{Op, patches};
use rollout_core::types::{Phase, Rollout};
use serde_json::json;

const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
const CACHED: [&str; 5] = [
    "apis/apps/v1/replicasets",
    "api/v1/services",
    "apis/networking.k8s.io/v1/ingresses",
    "apis/gantry.dev/v1alpha1/analysistemplates",
    "apis/discovery.k8s.io/v1/endpointslices",
];
const STATUS: &str = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?";

fn rollout(api: &FakeApi) -> Rollout {
    serde_json::from_value(api.get(ROLLOUTS, "shop", "backend").unwrap()).unwrap()
}

/// One reconcile with caches as the watches would hold them now; the
/// requests it sent.
async fn reconcile_once(api: &FakeApi) -> Vec<(Method, String)> {
    let objects = CACHED.iter().flat_map(|c| api.list(c)).collect();
    let ctx = Context::new(
        api.client(),
        Cached::of(objects).into_caches(),
        Metrics::default(),
        rollout_metrics::Client::new().unwrap(),
    );
    ctx.leader.store(true, Ordering::Relaxed);
    api.take_requests();
    reconcile(rollout(api).cached(), Arc::new(ctx))
        .await
        .unwrap();
    api.take_requests()
}

/// Reconciles until a reconcile sends nothing; every request on the way
/// must be a write. Returns each reconcile's requests.
async fn settle(api: &FakeApi) -> Vec<Vec<(Method, String)>> {
    let mut history = Vec::new();
    for _ in 0..20 {
        let sent = reconcile_once(api).await;
        let reads: Vec<_> = sent.iter().filter(|(m, _)| m == Method::GET).collect();
        assert!(reads.is_empty(), "reconcile read {reads:?}");
        eprintln!("reconcile {}: {sent:?}", history.len() + 1);
        if sent.is_empty() {
            return history;
        }
        history.push(sent);
    }
    panic!("not settled after 20 reconciles: {history:#?}");
}

fn paths(sent: &[(Method, String)]) -> Vec<String> {
    sent.iter().map(|(m, p)| format!("{m} {p}")).collect()
}

#[test]
fn reconcile_reads_nothing_and_a_settled_rollout_costs_no_request() {
    let (api, _server) = kube_fake::start_with(kube_fake::Options {
        crds_installed: true,
        kubelet: true,
        ..Default::default()
    });
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(release_promote_and_settle(&api));
}

async fn release_promote_and_settle(api: &FakeApi) {
    api.create(ROLLOUTS, serde_json::to_value(Rollout::test()).unwrap());
    api.create("api/v1/services", service("backend-service"));
    api.create("api/v1/services", service("backend-service-canary"));
    api.create(
        "apis/networking.k8s.io/v1/ingresses",
        ingress_with(json!({})),
    );

    // The first release: exactly its writes, then nothing.
    let first = settle(api).await;
    assert_eq!(
        paths(&first[0]),
        [
            "POST /apis/apps/v1/namespaces/shop/replicasets?",
            "PATCH /apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop?",
            &format!("PATCH {STATUS}"),
            "POST /apis/events.k8s.io/v1/namespaces/shop/events?",
        ]
    );
    assert_eq!(rollout(api).status.unwrap().phase, Some(Phase::Healthy));
    assert!(reconcile_once(api).await.is_empty(), "a Healthy Rollout");

    // A new image walks to the untimed pause, where it waits at no cost.
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "backend:2"}]}}}});
    api.merge_patch(ROLLOUTS, "shop", "backend", &image);
    let steps = settle(api).await;
    assert!(!steps.is_empty());
    let paused = rollout(api).status.unwrap();
    assert_eq!(paused.phase, Some(Phase::Paused), "{paused:?}");
    assert!(reconcile_once(api).await.is_empty(), "a paused Rollout");

    // A human promotes (the patch `gantry rollout promote` sends); the
    // canary completes with writes only, and is then settled again.
    let promote = patches(Op::Promote { full: false }, &rollout(api)).unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(api.client(), "shop");
    let status = promote.status.expect("promote patches the status");
    rollouts
        .patch_status("backend", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    settle(api).await;
    let done = rollout(api).status.unwrap();
    assert_eq!(done.phase, Some(Phase::Healthy), "{done:?}");
    assert!(reconcile_once(api).await.is_empty(), "Healthy again");
    // At most one status write per reconcile, whatever it decided.
    for sent in first.iter().chain(&steps) {
        let writes = sent.iter().filter(|(_, p)| p == STATUS).count();
        assert!(writes <= 1, "{sent:?}");
    }
}
