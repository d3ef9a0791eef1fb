//! Figures for the controller, printed (no pass/fail):
//! - the cost of one canary decision (ns per reconcile), mid-rollout;
//! - the resident memory of a Rollout cache holding 1,000 Rollouts
//!   (the reflector store of compact Rollouts the controller keeps),
//!   measured from /proc.
//!
//! Run: `cargo bench -p rollout-controller`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rollout_controller::cache::CachedRollout;
use rollout_core::decide::decide;
use rollout_core::hash::pod_template_hash;
use rollout_core::types::Rollout;
use rollout_core::world::{IngressView, ReplicaSetView, ServiceView, World};
use serde_json::json;

fn rollout(i: usize) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": format!("svc-{i}"), "namespace": "shop", "uid": format!("uid-{i}"), "generation": 3,
                     "labels": {"app.kubernetes.io/name": format!("svc-{i}"), "team": "payments"}},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": format!("svc-{i}")}},
            "template": {"metadata": {"labels": {"app": format!("svc-{i}")}},
                "spec": {"containers": [{"name": "api", "image": format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc-{i}:1.2.3"),
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                            {"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}]}},
            "strategy": {"canary": {"canaryService": format!("svc-{i}-canary"), "stableService": format!("svc-{i}"),
                "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80, "rootService": format!("svc-{i}")}},
                "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5m"}}]}}},
        "status": {"phase": "Paused", "stableRS": "stable", "currentStepIndex": 1, "controllerPause": true,
                   "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}]}
    }))
    .unwrap()
}

fn decision_cost() {
    let mut r = rollout(0);
    let hash = pod_template_hash(&r.spec.template);
    r.status.as_mut().unwrap().current_pod_hash = Some(hash.clone());
    let rs = |name: &str, hash: &str, n: i32| ReplicaSetView {
        name: name.into(),
        hash: hash.into(),
        replicas: n,
        ready: n,
        available: n,
        scale_down_at: None,
        created: None,
        pod_metadata: Default::default(),
        stops_gracefully: false,
    };
    let action = r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"svc-0-canary","ServicePort":"80","Weight":10},{"ServiceName":"svc-0","ServicePort":"80","Weight":90}]}}"#;
    let world = World {
        now: "2026-01-01T00:10:00Z".parse::<Timestamp>().unwrap(),
        replica_sets: vec![
            rs("svc-0-stable", "stable", 6),
            rs(&format!("svc-0-{hash}"), &hash, 1),
        ],
        stable_service: Some(ServiceView {
            name: "svc-0".into(),
            endpoints: Vec::new(),
            hash: Some("stable".into()),
            selected_at: None,
        }),
        canary_service: Some(ServiceView {
            name: "svc-0-canary".into(),
            endpoints: Vec::new(),
            hash: Some(hash.clone()),
            selected_at: None,
        }),
        ingresses: vec![IngressView {
            name: "shop".into(),
            annotations: BTreeMap::from([(
                "alb.ingress.kubernetes.io/actions.svc-0".into(),
                action.into(),
            )]),
            rules: vec![rollout_core::simulate::root_rule("svc-0")],
            hostname: None,
        }],
        ..Default::default()
    };
    let d = decide(&r, &world);
    assert!(
        d.actions.is_empty(),
        "the benchmark state is a settled pause: {:?}",
        d.actions
    );
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(decide(black_box(&r), black_box(&world)));
    }
    let per = start.elapsed().as_nanos() / n;
    println!("decide(), a Rollout paused mid-canary: {per} ns per reconcile ({n} runs)");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn cache_memory() {
    let before = rss_kib();
    let mut writer: Writer<CachedRollout> = Writer::default();
    let store = writer.as_reader();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..1000 {
        let cached = CachedRollout::new(rollout(i)).unwrap();
        writer.apply_watcher_event(&watcher::Event::InitApply(cached));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    assert_eq!(store.state().len(), 1000);
    let after = rss_kib();
    println!(
        "Rollout cache with 1,000 Rollouts: +{:.1} MiB resident ({:.1} MiB for the whole process)",
        (after.saturating_sub(before)) as f64 / 1024.0,
        after as f64 / 1024.0
    );
}

fn main() {
    decision_cost();
    cache_memory();
}
