//! A basic canary that names no Service (Argo's getting-started shape),
//! run by the built `rollout-controller` on the cluster `KUBECONFIG` names
//! (the e2e suite: CRDs installed, a fresh namespace, the kubelet played
//! where there are no nodes) or else on the fake API server. A Service of
//! the user's selects every revision's pods; the controller never touches
//! it, moves only pods (each setWeight a share of `replicas`), never lets
//! the available pods drop below `replicas - maxUnavailable`, and leaves the
//! old revision at zero once promoted.

use std::time::{Duration, Instant};

use gantry_tests::cluster::{Cluster, replica_sets, rollouts, services};
use gantry_tests::controller::Controller;
use gantry_tests::free_port;
use serde_json::{Value, json};

const HASH: &str = "rollouts-pod-template-hash";

struct Run {
    cluster: Cluster,
    controller: Controller,
    /// The fewest available pods seen across every revision since the
    /// first deploy was Healthy.
    fewest_available: i64,
}

impl Run {
    fn status(&self) -> Value {
        self.cluster
            .get(&rollouts(), "demo")
            .map(|r| r["status"].clone())
            .unwrap_or_default()
    }

    /// Replicas wanted of the ReplicaSet with pod-template-hash `hash`.
    fn replicas(&self, hash: &str) -> i64 {
        self.cluster
            .list(&replica_sets())
            .iter()
            .find(|rs| rs["metadata"]["labels"][HASH] == hash)
            .map_or(0, |rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
    }

    fn available(&self) -> i64 {
        self.cluster
            .list(&replica_sets())
            .iter()
            .map(|rs| rs["status"]["availableReplicas"].as_i64().unwrap_or(0))
            .sum()
    }

    /// Waits up to 2 minutes for `done`, noting the available pods.
    fn wait(&mut self, what: &str, done: impl Fn(&Run, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.status();
            if status["stableRS"].is_string() {
                self.fewest_available = self.fewest_available.min(self.available());
            }
            if done(self, &status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status:#}\n{}",
                self.controller.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn paused_at(status: &Value, step: i64) -> bool {
        status["phase"] == "Paused" && status["currentStepIndex"] == step
    }
}

#[test]
fn a_canary_without_services_moves_pods_and_leaves_the_users_service_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new("gantry-basic", dir.path());
    // The user's own Service, selecting every revision's pods.
    cluster.create(
        &services(),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo"},
            "spec": {"selector": {"app": "demo"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    let service_before = cluster.get(&services(), "demo").unwrap();
    cluster.create(
        &rollouts(),
        json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "demo"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}},
                    "spec": {"terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "demo", "image": "registry.k8s.io/pause:3.9"}]}},
                "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "2s"}},
                              {"setWeight": 50}, {"pause": {}}]}}}}),
    );
    let ns = cluster.ns.clone();
    let controller = Controller::start_on(
        &cluster.kubeconfig,
        dir.path(),
        free_port(),
        &["--namespace", &ns, "--lease-namespace", &ns],
        &[],
    );
    let mut run = Run {
        cluster,
        controller,
        fewest_available: i64::MAX,
    };

    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let stable = first["stableRS"].as_str().unwrap().to_string();
    let patch =
        json!({"spec": {"template": {"metadata": {"annotations": {"demo/revision": "2"}}}}});
    run.cluster.merge_patch(&rollouts(), "demo", &patch, false);

    let half = run.wait("50% and the untimed pause", |_, s| Run::paused_at(s, 3));
    let canary = half["currentPodHash"].as_str().unwrap().to_string();
    assert_ne!(canary, stable);
    assert_eq!((run.replicas(&canary), run.replicas(&stable)), (2, 2));
    // A share of pods, not of traffic: no weights to report.
    assert!(half["canary"]["weights"].is_null(), "{half:#}");

    run.cluster.merge_patch(
        &rollouts(),
        "demo",
        &json!({"status": {"pauseConditions": null}}),
        true,
    );
    let done = run.wait("promotion", |r, s| {
        s["phase"] == "Healthy" && s["stableRS"] == canary && r.replicas(&stable) == 0
    });
    assert_eq!(run.replicas(&canary), 4, "{done:#}");
    assert!(
        run.fewest_available >= 4,
        "available pods fell to {} (maxUnavailable 0)",
        run.fewest_available
    );
    // The user's Service is as it was: no selector, no annotation added.
    let service_after = run.cluster.get(&services(), "demo").unwrap();
    assert_eq!(
        service_after["metadata"]["resourceVersion"], service_before["metadata"]["resourceVersion"],
        "{service_after:#}"
    );
    let log = run.controller.log().join("\n");
    assert!(!log.contains("\"ERROR\""), "{log}");
}
