//! Argo fields run by the built `rollout-controller` on the cluster
//! `KUBECONFIG` names (the e2e suite: CRDs installed, a fresh namespace,
//! the kubelet played where there are no nodes) or else on the fake API
//! server:
//! - a basic canary that names no Service (Argo's getting-started shape):
//!   a Service of the user's selects every revision's pods; the controller
//!   never touches it, moves only pods (each setWeight a share of
//!   `replicas`), never lets the available pods drop below
//!   `replicas - maxUnavailable`, and leaves the old revision at zero once
//!   promoted;
//! - `rollbackWindow`: going back to the previous revision skips the steps;
//! - `setCanaryScale` with ALB routing: the canary's pods apart from the
//!   weight the Ingress carries;
//! - `pingPong`: the canary's Service becomes the stable one at promotion;
//! - `alb.ingresses`: two Ingresses carry the weights, both reset when the
//!   Rollout is deleted;
//! - `dynamicStableScale`: the stable down to its share once the weight
//!   moved, back to full size before the weight returns on abort, its
//!   pods given a preStop sleep;
//! - `job` metrics: a Job per measurement, its outcome the measurement's
//!   (the Job controller and kubelet played where there are none);
//! - header routes (`managedRoutes` + `setHeaderRoute`): the conditions
//!   and action annotations and the route's path before the root
//!   Service's, removed by a step, at promotion and when the Rollout is
//!   deleted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gantry_tests::cluster::{
    Cluster, analysis_templates, ingresses, jobs, replica_sets, rollouts, services,
};
use gantry_tests::controller::Controller;
use gantry_tests::free_port;
use rollout_core::alb::parse_action;
use serde_json::{Value, json};

const HASH: &str = "rollouts-pod-template-hash";
const ACTION: &str = "alb.ingress.kubernetes.io/actions.demo-stable";

/// ALB routing through the Ingress `demo`, weights trusted once written (no
/// load balancer here: settle and drain 0), with `canary` merged into the
/// canary strategy.
fn routed(steps: Value, canary: Value) -> Value {
    let mut spec = json!({"strategy": {"canary": {"canaryService": "demo-canary", "stableService": "demo-stable",
        "trafficRouting": {"alb": {"ingress": "demo", "servicePort": 80,
            "targetHealth": {"settleSeconds": 0, "drainSeconds": 0}}},
        "steps": steps}}});
    json_patch::merge(&mut spec, &json!({"strategy": {"canary": canary}}));
    spec
}

/// The pod-template-hash a Service selects.
fn selected(run: &Run, service: &str) -> Option<String> {
    let s = run.cluster.get(&services(), service)?;
    s["spec"]["selector"][HASH].as_str().map(String::from)
}

struct Run {
    cluster: Cluster,
    controller: Controller,
    /// The fewest available pods seen across every revision since the
    /// first deploy was Healthy.
    fewest_available: i64,
    /// Every phase seen since the last release.
    phases: BTreeSet<String>,
}

impl Run {
    /// The user's Service `demo` selecting every revision (and `demo-stable`,
    /// `demo-canary` and an ALB Ingress `demo` for `ROUTED`), a Rollout
    /// `demo` naming none (`spec` merged into a basic canary's), the
    /// controller.
    fn start(dir: &std::path::Path, name: &str, spec: Value) -> Run {
        let cluster = Cluster::new(name, dir);
        for service in ["demo", "demo-stable", "demo-canary"] {
            cluster.create(
                &services(),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
                    "spec": {"selector": {"app": "demo"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            );
        }
        cluster.create(
            &ingresses(),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "demo"},
                "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "demo-stable", "port": {"name": "use-annotation"}}}}]}}]}}),
        );
        let mut rollout = json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "demo"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}, "annotations": {"demo/revision": "1"}},
                    "spec": {"terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "demo", "image": "registry.k8s.io/pause:3.9"}]}},
                "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "2s"}},
                              {"setWeight": 50}, {"pause": {}}]}}}});
        json_patch::merge(&mut rollout, &json!({ "spec": spec }));
        cluster.create(&rollouts(), rollout);
        let ns = cluster.ns.clone();
        let controller = Controller::start_on(
            &cluster.kubeconfig,
            dir,
            free_port(),
            &["--namespace", &ns, "--lease-namespace", &ns],
            &[],
        );
        Run {
            cluster,
            controller,
            fewest_available: i64::MAX,
            phases: BTreeSet::new(),
        }
    }

    fn status(&self) -> Value {
        self.cluster
            .get(&rollouts(), "demo")
            .map(|r| r["status"].clone())
            .unwrap_or_default()
    }

    /// A new template: the `demo/revision` annotation.
    fn release(&mut self, revision: &str) {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"demo/revision": revision}}}}});
        self.cluster.merge_patch(&rollouts(), "demo", &patch, false);
        self.phases.clear();
    }

    fn promote(&self) {
        let patch = json!({"status": {"pauseConditions": null}});
        self.cluster.merge_patch(&rollouts(), "demo", &patch, true);
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

    /// Waits up to 2 minutes for `done`, noting the available pods and
    /// the phases.
    fn wait(&mut self, what: &str, done: impl Fn(&Run, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.status();
            if status["stableRS"].is_string() {
                self.fewest_available = self.fewest_available.min(self.available());
            }
            if let Some(phase) = status["phase"].as_str() {
                self.phases.insert(phase.to_string());
            }
            if done(self, &status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status:#}\n{}",
                self.controller.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The canary's weight the Ingress carries.
    fn weight(&self) -> Option<i32> {
        self.weight_of("demo-canary")
    }

    /// The weight of `service`'s target group on the Ingress.
    fn weight_of(&self, service: &str) -> Option<i32> {
        self.weight_on("demo", service)
    }

    /// The weight of `service`'s target group on Ingress `ingress`.
    fn weight_on(&self, ingress: &str, service: &str) -> Option<i32> {
        let ingress = self.cluster.get(&ingresses(), ingress)?;
        let action = ingress["metadata"]["annotations"][ACTION].as_str()?;
        parse_action(action).ok()?.weight_of(service)
    }

    fn paused_at(status: &Value, step: i64) -> bool {
        status["phase"] == "Paused" && status["currentStepIndex"] == step
    }

    fn healthy_on(status: &Value, hash: &str) -> bool {
        status["phase"] == "Healthy" && status["stableRS"] == hash
    }
}

#[test]
fn a_canary_without_services_moves_pods_and_leaves_the_users_service_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::start(dir.path(), "gantry-basic", json!({}));
    let service_before = run.cluster.get(&services(), "demo").unwrap();

    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let stable = first["stableRS"].as_str().unwrap().to_string();
    run.release("2");
    let half = run.wait("50% and the untimed pause", |_, s| Run::paused_at(s, 3));
    let canary = half["currentPodHash"].as_str().unwrap().to_string();
    assert_ne!(canary, stable);
    assert_eq!((run.replicas(&canary), run.replicas(&stable)), (2, 2));
    // A share of pods, not of traffic: no weights to report.
    assert!(half["canary"]["weights"].is_null(), "{half:#}");

    run.promote();
    let done = run.wait("promotion", |r, s| {
        Run::healthy_on(s, &canary) && r.replicas(&stable) == 0
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

#[test]
fn going_back_within_the_rollback_window_skips_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let window = json!({"rollbackWindow": {"revisions": 2}});
    let mut run = Run::start(dir.path(), "gantry-window", window);
    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let first = first["stableRS"].as_str().unwrap().to_string();
    run.release("2");
    run.wait("the untimed pause", |_, s| Run::paused_at(s, 3));
    run.promote();
    let second = run.wait("release 2", |_, s| {
        s["phase"] == "Healthy" && s["stableRS"] != first.as_str()
    });
    let second = second["stableRS"].as_str().unwrap().to_string();

    // Back to the first template: straight to Healthy, no pause on the way.
    run.release("1");
    run.wait("the rollback", |r, s| {
        Run::healthy_on(s, &first) && r.replicas(&first) == 4
    });
    assert!(!run.phases.contains("Paused"), "{:?}", run.phases);
    assert!(run.fewest_available >= 4, "{}", run.fewest_available);
    // Forward to the second again is no rollback: its steps hold it.
    run.release("2");
    run.wait("the pause at 25%", |_, s| Run::paused_at(s, 1));
    run.wait("the untimed pause", |_, s| Run::paused_at(s, 3));
    assert_eq!(run.status()["currentPodHash"], second.as_str());
}

#[test]
fn set_canary_scale_sizes_the_canary_apart_from_its_weight() {
    let dir = tempfile::tempdir().unwrap();
    let steps = json!([{"setCanaryScale": {"replicas": 3}}, {"pause": {}},
        {"setWeight": 25}, {"pause": {}}, {"setCanaryScale": {"matchTrafficWeight": true}},
        {"setWeight": 50}, {"pause": {}}]);
    let mut run = Run::start(dir.path(), "gantry-scale", routed(steps, json!({})));
    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let stable = first["stableRS"].as_str().unwrap().to_string();
    run.release("2");
    let scaled = run.wait("the first pause", |_, s| Run::paused_at(s, 1));
    let canary = scaled["currentPodHash"].as_str().unwrap().to_string();
    // Three pods ready before any traffic; the stable keeps all four.
    assert_eq!((run.replicas(&canary), run.replicas(&stable)), (3, 4));
    assert_eq!(run.weight(), Some(0));
    run.promote();
    run.wait("25%", |_, s| Run::paused_at(s, 3));
    assert_eq!((run.replicas(&canary), run.weight()), (3, Some(25)));
    run.promote();
    run.wait("50%", |_, s| Run::paused_at(s, 6));
    // Following the weight again: 50% of 4 is 2, and the third pod stays
    // (a lower scale never takes pods from the running canary).
    assert_eq!((run.replicas(&canary), run.weight()), (3, Some(50)));
    run.promote();
    run.wait("promotion", |r, s| {
        Run::healthy_on(s, &canary) && r.weight() == Some(0)
    });
    assert_eq!(run.replicas(&canary), 4);
}

#[test]
fn ping_pong_makes_the_canarys_service_the_stable_one() {
    let dir = tempfile::tempdir().unwrap();
    // Ping and pong are demo-canary and demo-stable; the Ingress rule's
    // Service (rootService) stays demo-stable.
    let spec = routed(
        json!([{"setWeight": 25}, {"pause": {}}]),
        json!({"canaryService": null, "stableService": null, "scaleDownDelaySeconds": 2,
            "pingPong": {"pingService": "demo-canary", "pongService": "demo-stable"},
            "trafficRouting": {"alb": {"rootService": "demo-stable"}}}),
    );
    let mut run = Run::start(dir.path(), "gantry-pingpong", spec);
    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let stable = first["stableRS"].as_str().unwrap().to_string();
    assert_eq!(
        run.weight_of("demo-stable"),
        Some(100),
        "pong is stable first"
    );
    run.release("2");
    let paused = run.wait("25%", |_, s| Run::paused_at(s, 1));
    let canary = paused["currentPodHash"].as_str().unwrap().to_string();
    assert_eq!(run.weight_of("demo-canary"), Some(25));
    assert_eq!(
        selected(&run, "demo-canary").as_deref(),
        Some(canary.as_str())
    );
    run.promote();
    let done = run.wait("promotion", |r, s| {
        // The stable Service is never re-pointed at the canary mid-canary.
        assert!(
            s["stableRS"] == canary.as_str()
                || selected(r, "demo-stable").as_deref() == Some(stable.as_str()),
            "{s:#}"
        );
        Run::healthy_on(s, &canary)
            && selected(r, "demo-stable").as_deref() == Some(canary.as_str())
    });
    assert_eq!(done["canary"]["stablePingPong"], "ping", "{done:#}");
    assert_eq!(run.weight_of("demo-canary"), Some(100));
    assert_eq!(run.weight_of("demo-stable"), Some(0));
    run.wait("the old stable to scale down", |r, _| {
        r.replicas(&stable) == 0
    });
}

#[test]
fn two_ingresses_carry_the_weights_and_are_both_reset_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let spec = routed(
        json!([{"setWeight": 30}, {"pause": {}}]),
        json!({"trafficRouting": {"alb": {"ingress": null, "ingresses": ["demo", "demo-internal"]}}}),
    );
    let mut run = Run::start(dir.path(), "gantry-ingresses", spec);
    // The internal ALB's Ingress: the same rule, another load balancer.
    let mut internal = run.cluster.get(&ingresses(), "demo").unwrap();
    internal["metadata"] = json!({"name": "demo-internal"});
    run.cluster.create(&ingresses(), internal);
    let both = |r: &Run, w: i32| {
        r.weight_on("demo", "demo-canary") == Some(w)
            && r.weight_on("demo-internal", "demo-canary") == Some(w)
    };
    run.wait("the first deploy on both", |r, s| {
        s["phase"] == "Healthy" && both(r, 0)
    });
    run.release("2");
    run.wait("30% on both Ingresses", |r, s| {
        Run::paused_at(s, 1) && both(r, 30)
    });

    // Deleted mid-canary: both Ingresses back to 100% stable first.
    run.cluster.delete(&rollouts(), "demo");
    run.wait("the Rollout gone", |r, _| {
        r.cluster.get(&rollouts(), "demo").is_none()
    });
    assert!(
        both(&run, 0),
        "{:?} {:?}",
        run.weight_on("demo", "demo-canary"),
        run.weight_on("demo-internal", "demo-canary")
    );
}

/// The header route `testers` on Ingress `demo`: its conditions annotation
/// and the backends of the rule's paths, in order.
fn header_route(run: &Run) -> (Option<String>, Vec<String>) {
    let ingress = run.cluster.get(&ingresses(), "demo").unwrap();
    let conditions =
        ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/conditions.testers"]
            .as_str()
            .map(String::from);
    let backends = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["backend"]["service"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (conditions, backends)
}

#[test]
fn a_header_route_goes_before_the_root_path_and_is_removed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let route = json!({"setHeaderRoute": {"name": "testers",
        "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}},
                  {"headerName": "User-Agent", "headerValue": {"prefix": "Mobile"}}]}});
    let spec = routed(
        json!([{"setWeight": 25}, route, {"pause": {}},
            {"setHeaderRoute": {"name": "testers"}}, {"pause": {}}, route.clone(), {"pause": {}}]),
        json!({"trafficRouting": {"managedRoutes": [{"name": "testers"}]}}),
    );
    let mut run = Run::start(dir.path(), "gantry-header-route", spec);
    run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    assert_eq!(header_route(&run), (None, vec!["demo-stable".to_string()]));
    run.release("2");
    let paused = run.wait("the route", |_, s| Run::paused_at(s, 2));
    assert_eq!(
        paused["canary"]["headerRoutes"],
        json!(["testers"]),
        "{paused:#}"
    );
    let (conditions, backends) = header_route(&run);
    assert_eq!(
        conditions.as_deref(),
        Some(
            r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"X-Canary","Values":["yes"]}},{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"User-Agent","Values":["Mobile*"]}}]"#
        )
    );
    assert_eq!(backends, ["testers", "demo-stable"]);
    let ingress = run.cluster.get(&ingresses(), "demo").unwrap();
    let action = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.testers"]
        .as_str()
        .unwrap();
    assert_eq!(
        parse_action(action).unwrap().weight_of("demo-canary"),
        Some(100)
    );
    assert_eq!(run.weight(), Some(25), "the weights stay as they are");

    run.promote();
    run.wait("the route removed", |_, s| Run::paused_at(s, 4));
    assert_eq!(header_route(&run), (None, vec!["demo-stable".to_string()]));
    run.promote();
    run.wait("the route again", |_, s| Run::paused_at(s, 6));
    assert_eq!(header_route(&run).1, ["testers", "demo-stable"]);

    // Deleted mid-canary: the route goes with the weights.
    run.cluster.delete(&rollouts(), "demo");
    run.wait("the Rollout gone", |r, _| {
        r.cluster.get(&rollouts(), "demo").is_none()
    });
    assert_eq!(header_route(&run), (None, vec!["demo-stable".to_string()]));
    assert_eq!(run.weight(), Some(0));
    let ingress = run.cluster.get(&ingresses(), "demo").unwrap();
    let annotations = ingress["metadata"]["annotations"].as_object().unwrap();
    assert!(
        !annotations.contains_key("alb.ingress.kubernetes.io/actions.testers"),
        "{annotations:?}"
    );
}

#[test]
fn promotion_removes_the_header_routes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = routed(
        json!([{"setWeight": 25}, {"setHeaderRoute": {"name": "testers",
            "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}}, {"pause": {}}]),
        json!({"trafficRouting": {"managedRoutes": [{"name": "testers"}]}}),
    );
    let mut run = Run::start(dir.path(), "gantry-header-promote", spec);
    run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    run.release("2");
    let paused = run.wait("the route", |_, s| Run::paused_at(s, 2));
    let canary = paused["currentPodHash"].as_str().unwrap().to_string();
    assert!(header_route(&run).0.is_some());
    run.promote();
    let done = run.wait("promotion", |r, s| {
        Run::healthy_on(s, &canary) && r.weight() == Some(0)
    });
    assert_eq!(header_route(&run), (None, vec!["demo-stable".to_string()]));
    assert!(done["canary"]["headerRoutes"].is_null(), "{done:#}");
}

#[test]
fn a_dynamically_scaled_stable_follows_its_share_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let spec = routed(
        json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]),
        json!({"dynamicStableScale": true}),
    );
    let mut run = Run::start(dir.path(), "gantry-dynamic", spec);
    let first = run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    let stable = first["stableRS"].as_str().unwrap().to_string();
    // Every container without a preStop hook gets a sleep (the settle
    // time, at least 1 s), and the pod as much more grace (from 0 here).
    let rs = run
        .cluster
        .list(&replica_sets())
        .into_iter()
        .find(|rs| rs["metadata"]["labels"][HASH] == stable.as_str())
        .unwrap();
    let pod = &rs["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 1}})
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 1);
    assert_eq!(
        rs["metadata"]["annotations"]["gantry.dev/stops-gracefully"],
        "true"
    );

    run.release("2");
    run.wait("25%", |_, s| Run::paused_at(s, 1));
    // 75% of 4 pods' traffic on the stable: 3 pods.
    assert_eq!((run.weight(), run.replicas(&stable)), (Some(25), 3));
    run.promote();
    let at_75 = run.wait("75% and the stable at 1 pod", |r, s| {
        Run::paused_at(s, 3) && r.replicas(&stable) == 1
    });
    let canary = at_75["currentPodHash"].as_str().unwrap().to_string();
    assert_eq!((run.weight(), run.replicas(&canary)), (Some(75), 3));

    // Abort: the stable is back to 4 available pods before any weight
    // returns to it.
    let patch = json!({"status": {"abort": true}});
    run.cluster.merge_patch(&rollouts(), "demo", &patch, true);
    run.wait("the abort", |r, s| {
        let available = r
            .cluster
            .list(&replica_sets())
            .into_iter()
            .find(|rs| rs["metadata"]["labels"][HASH] == stable.as_str())
            .and_then(|rs| rs["status"]["availableReplicas"].as_i64())
            .unwrap_or(0);
        if r.weight() != Some(75) {
            assert_eq!(
                available, 4,
                "weight moved back onto {available} stable pods"
            );
        }
        s["phase"] == "Degraded" && r.weight() == Some(0)
    });
}

/// The analysis Jobs of the Rollout `demo`, newest last.
fn analysis_jobs(run: &Run) -> Vec<Value> {
    let mut all: Vec<Value> = run
        .cluster
        .list(&jobs())
        .into_iter()
        .filter(|j| j["metadata"]["labels"]["gantry.dev/rollout"] == "demo")
        .collect();
    all.sort_by_key(|j| {
        j["metadata"]["creationTimestamp"]
            .as_str()
            .map(String::from)
    });
    all
}

#[test]
fn a_job_metric_runs_a_job_per_measurement_and_judges_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = routed(
        json!([{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "smoke"}]}}, {"pause": {}}]),
        json!({}),
    );
    let mut run = Run::start(dir.path(), "gantry-job-metric", spec);
    run.cluster.create(
        &analysis_templates(),
        json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "smoke"},
            "spec": {"metrics": [{"name": "smoke", "provider": {"job": {
                "metadata": {"labels": {"team": "payments"}},
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "smoke", "image": "registry.k8s.io/pause:3.9",
                        "command": ["/smoke", "--target", "http://demo-canary"]}]}}}}}}]}}),
    );
    run.wait("the first deploy", |_, s| s["phase"] == "Healthy");
    run.release("2");
    // The step analysis starts its Job, and waits for it.
    run.wait("the smoke Job", |r, _| !analysis_jobs(r).is_empty());
    let created = analysis_jobs(&run).remove(0);
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("demo-step-1-smoke-") && name.ends_with("-1"),
        "{name}"
    );
    assert_eq!(created["metadata"]["labels"]["team"], "payments");
    assert_eq!(
        created["metadata"]["labels"]["gantry.dev/analysis-run"],
        "step-1"
    );
    assert_eq!(created["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    assert_eq!(created["spec"]["ttlSecondsAfterFinished"], 86400);
    std::thread::sleep(Duration::from_secs(2));
    let status = run.status();
    assert_eq!(
        status["currentStepIndex"], 1,
        "held while the Job runs: {status:#}"
    );
    assert_eq!(analysis_jobs(&run).len(), 1, "one Job per measurement");

    run.cluster.finish_job(&name, true);
    let paused = run.wait("the analysis passed", |_, s| Run::paused_at(s, 2));
    let measured = &paused["analysisRuns"][0]["metrics"][0];
    assert_eq!(measured["successful"], 1, "{paused:#}");
    assert!(
        measured["measurements"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("Job {name} completed")),
        "{measured:#}"
    );

    // The next release: its Job fails, and the canary is aborted.
    run.release("3");
    run.wait("the next smoke Job", |r, _| analysis_jobs(r).len() == 2);
    let second = analysis_jobs(&run).pop().unwrap();
    let second = second["metadata"]["name"].as_str().unwrap().to_string();
    assert_ne!(second, name);
    run.cluster.finish_job(&second, false);
    run.wait("the abort", |r, s| {
        s["phase"] == "Degraded" && r.weight() == Some(0)
    });
    let status = run.status();
    assert!(
        status["message"].as_str().unwrap().contains("failed"),
        "{status:#}"
    );
}
