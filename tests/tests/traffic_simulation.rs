//! Requests counted at a simulated ALB while the real `rollout-controller`
//! moves traffic (`gantry_tests::alb_sim`: the AWS Load Balancer Controller
//! and the ALB with AWS's timing, 200 requests a second): every scenario
//! of a canary — to promotion, aborted at 50%, a new image at 25%, rolled
//! back, the controller killed at every step — with the LB controller 0, 2
//! and 10 s late and 5 s health checks, on the fake API server, loses no
//! request. Argo Rollouts' ordering, replayed by hand on the same cluster
//! and ALB, loses requests: the simulation can fail.
//!
//! The controller runs without the ELBv2 API here (annotation-only mode):
//! it waits its settle time (the LB controller's lag + health checks + 2 s
//! for polling) where it cannot see target health.
//!
//! The runs are independent and mostly waiting, so they run side by side;
//! the table of requests and failures is printed (`--nocapture`).
//! `GANTRY_SIM_ONLY=<Scenario>` runs one scenario (at every lag).

use std::time::{Duration, Instant};

use gantry_tests::alb_sim::{AlbSim, Report, Route, Timing};
use gantry_tests::controller::Controller;
use gantry_tests::free_port;
use gantry_tests::kube_fake::{self, FakeApi};
use serde_json::{Value, json};

const NS: &str = "shop";
const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
const SERVICES: &str = "api/v1/services";
const REPLICA_SETS: &str = "apis/apps/v1/replicasets";
const INGRESSES: &str = "apis/networking.k8s.io/v1/ingresses";
const KEY: &str = "alb.ingress.kubernetes.io/actions.backend-service";
const HEALTH_CHECK: Duration = Duration::from_secs(5);
const DEREGISTRATION: Duration = Duration::from_secs(10);
const LAGS: [u64; 3] = [0, 2, 10];

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Promotion,
    AbortAtHalf,
    NewImageAtQuarter,
    Rollback,
    RestartAtEveryStep,
}

/// One cluster, controller and ALB.
struct Run {
    api: FakeApi,
    _server: tokio::runtime::Runtime,
    /// Runs the ALB simulation.
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    controller: Option<Controller>,
    sim: AlbSim,
    lag: Duration,
}

impl Run {
    /// The app deployed on `backend:1` and served; counting starts now.
    fn deployed(lag: Duration, controller: bool) -> Run {
        let (api, server) = kube_fake::start_with(kube_fake::Options {
            crds_installed: true,
            kubelet: true,
            ..Default::default()
        });
        for name in ["backend-service", "backend-service-canary"] {
            api.create(
                SERVICES,
                json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}}),
            );
        }
        api.create(INGRESSES, json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}}));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let route = Route {
            namespace: NS.into(),
            ingress: "shop".into(),
            action_key: KEY.into(),
            stable: "backend-service".into(),
            canary: "backend-service-canary".into(),
        };
        let timing = Timing {
            lag,
            health_check: HEALTH_CHECK,
            deregistration: DEREGISTRATION,
        };
        let fake = api.clone();
        let sim = rt.block_on(async move { AlbSim::start(fake.client(), route, timing) });
        let mut run = Run {
            api,
            _server: server,
            _rt: rt,
            dir: tempfile::tempdir().unwrap(),
            controller: None,
            sim,
            lag,
        };
        if controller {
            run.api.create(ROLLOUTS, run.rollout());
            run.start_controller();
            run.wait("the first deploy to be served", |r| {
                r.phase() == "Healthy" && r.served_by_stable()
            });
        } else {
            run.argo_first_deploy();
        }
        run.sim.reset();
        run
    }

    fn rollout(&self) -> Value {
        let settle = (self.lag + HEALTH_CHECK).as_secs() + 2;
        json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            // kube's finalizer helper adds to an existing list on the fake.
            "metadata": {"name": "backend", "namespace": NS, "finalizers": ["gantry.dev/rollout-cleanup"]},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}},
                             "spec": {"containers": [{"name": "api", "image": "backend:1"}]}},
                "strategy": {"canary": {"canaryService": "backend-service-canary", "stableService": "backend-service",
                    "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                    "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80,
                        "targetHealth": {"settleSeconds": settle, "drainSeconds": DEREGISTRATION.as_secs()}}},
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "5s"}},
                              {"setWeight": 50}, {"pause": {}}]}}}})
    }

    fn start_controller(&mut self) {
        let args = ["--namespace", NS, "--lease-namespace", NS];
        self.controller = Some(Controller::start(
            &self.api,
            self.dir.path(),
            free_port(),
            &args,
        ));
    }

    /// SIGKILL, then a new process.
    fn restart_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
        self.start_controller();
    }

    fn status(&self) -> Value {
        self.api
            .get(ROLLOUTS, NS, "backend")
            .map(|r| r["status"].clone())
            .unwrap_or_default()
    }

    fn phase(&self) -> String {
        self.status()["phase"].as_str().unwrap_or_default().into()
    }

    fn step(&self) -> i64 {
        self.status()["currentStepIndex"].as_i64().unwrap_or(-1)
    }

    fn paused_at(&self, step: i64) -> bool {
        self.phase() == "Paused" && self.step() == step
    }

    /// All traffic on a stable group whose targets are all healthy.
    fn served_by_stable(&self) -> bool {
        let targets = self.sim.targets("backend-service");
        self.sim.weight() == Some(0)
            && !targets.is_empty()
            && targets
                .iter()
                .all(|t| t.state == rollout_core::world::TargetState::Healthy)
    }

    /// Replicas of every ReplicaSet but `keep`'s hash, summed.
    fn others_replicas(&self, keep: &str) -> i64 {
        self.api
            .list(REPLICA_SETS)
            .iter()
            .filter(|rs| rs["metadata"]["labels"]["rollouts-pod-template-hash"] != keep)
            .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
            .sum()
    }

    fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
        self.api.merge_patch(ROLLOUTS, NS, "backend", &patch);
    }

    fn human(&self, status: Value) {
        self.api
            .patch_status(ROLLOUTS, NS, "backend", &json!({ "status": status }));
    }

    fn wait(&mut self, what: &str, done: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(240);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "lag {:?}: timed out waiting for {what}: {:#}\n{}",
                self.lag,
                self.status(),
                self.controller
                    .as_ref()
                    .map(|c| c.log().join("\n"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A release to the untimed pause at 50%.
    fn release_to_half(&mut self, image: &str) {
        self.set_image(image);
        self.wait("the pause at 50%", |r| r.paused_at(3));
    }

    fn play(&mut self, scenario: Scenario) {
        match scenario {
            Scenario::Promotion => {
                self.release_to_half("backend:2");
                self.human(json!({"pauseConditions": null}));
                self.wait_stable_alone();
            }
            Scenario::AbortAtHalf => {
                self.release_to_half("backend:2");
                let stable = self.status()["stableRS"].as_str().unwrap().to_string();
                self.human(json!({"abort": true}));
                self.wait("the abort to finish", |r| {
                    r.phase() == "Degraded"
                        && r.others_replicas(&stable) == 0
                        && r.served_by_stable()
                });
            }
            Scenario::NewImageAtQuarter => {
                self.set_image("backend:2");
                self.wait("the pause at 25%", |r| r.step() == 1);
                self.release_to_half("backend:3");
                self.human(json!({"pauseConditions": null}));
                self.wait_stable_alone();
            }
            Scenario::Rollback => {
                self.release_to_half("backend:2");
                self.set_image("backend:1");
                self.wait_stable_alone();
            }
            Scenario::RestartAtEveryStep => {
                let old = self.status()["stableRS"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.set_image("backend:2");
                let promoted = |r: &Run| {
                    let stable = r.status()["stableRS"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    r.phase() == "Healthy" && stable != old
                };
                // Killed whenever the status shows another phase, step or wait.
                let mut seen = Value::Null;
                let mut restarts = 0;
                let deadline = Instant::now() + Duration::from_secs(240);
                while !promoted(self) {
                    let status = self.status();
                    let now = json!([
                        status["phase"],
                        status["currentStepIndex"],
                        status["message"]
                    ]);
                    if now != seen {
                        seen = now;
                        restarts += 1;
                        self.restart_controller();
                    }
                    if self.paused_at(3) {
                        self.human(json!({"pauseConditions": null}));
                    }
                    assert!(Instant::now() < deadline, "stuck at {seen}");
                    std::thread::sleep(Duration::from_millis(300));
                }
                assert!(restarts >= 6, "restarted only {restarts} times");
                self.wait_stable_alone();
            }
        }
    }

    /// Healthy on the current template, everything else scaled down and
    /// drained, all traffic on the stable group.
    fn wait_stable_alone(&mut self) {
        self.wait("the stable version alone, served", |r| {
            let status = r.status();
            let stable = status["stableRS"].as_str().unwrap_or_default();
            r.phase() == "Healthy"
                && status["currentPodHash"] == stable
                && r.others_replicas(stable) == 0
                && r.served_by_stable()
        });
        // A drain that outlives the scale-down would still cut requests.
        std::thread::sleep(DEREGISTRATION + self.lag);
    }
}

fn table_row(what: &str, lag: u64, r: &Report) -> String {
    format!(
        "{what:<32} {lag:>4}s {:>9} {:>7} {:>5} {:>5} {:>5}",
        r.requests,
        r.failed(),
        r.no_healthy_target,
        r.pod_gone,
        r.drain_cut
    )
}

#[test]
fn no_request_is_lost_in_any_scenario_at_any_lag() {
    let scenarios = [
        Scenario::Promotion,
        Scenario::AbortAtHalf,
        Scenario::NewImageAtQuarter,
        Scenario::Rollback,
        Scenario::RestartAtEveryStep,
    ];
    let only = std::env::var("GANTRY_SIM_ONLY").ok();
    let scenarios = scenarios
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| format!("{s:?}") == o));
    let runs: Vec<_> = scenarios
        .flat_map(|s| LAGS.iter().map(move |lag| (s, *lag)))
        .map(|(scenario, lag)| {
            std::thread::spawn(move || {
                let mut run = Run::deployed(Duration::from_secs(lag), true);
                run.play(scenario);
                (scenario, lag, run.sim.report())
            })
        })
        .collect();
    let mut rows = vec![format!(
        "{:<32} {:>5} {:>9} {:>7} {:>5} {:>5} {:>5}",
        "SCENARIO", "LAG", "REQUESTS", "FAILED", "503", "502", "DRAIN"
    )];
    let mut lost = Vec::new();
    for run in runs {
        let (scenario, lag, report) = run.join().expect("a scenario panicked");
        rows.push(table_row(&format!("{scenario:?}"), lag, &report));
        assert!(report.requests > 0, "{scenario:?} at {lag}s sent nothing");
        if report.failed() > 0 {
            lost.push(format!("{scenario:?} at {lag}s: {:#?}", report.first));
        }
    }
    eprintln!("{}", rows.join("\n"));
    assert!(lost.is_empty(), "{}", lost.join("\n"));
}

impl Run {
    /// Argo Rollouts' first deploy: one ReplicaSet, both Services on it,
    /// all weight to stable.
    fn argo_first_deploy(&mut self) {
        self.argo_replica_set("v1", 4);
        for service in ["backend-service", "backend-service-canary"] {
            self.argo_point(service, "v1");
        }
        self.argo_weight(0);
        self.wait("the first deploy to be served", |r| r.served_by_stable());
    }

    fn argo_replica_set(&self, hash: &str, replicas: i64) {
        let name = format!("backend-{hash}");
        if self.api.get(REPLICA_SETS, NS, &name).is_some() {
            let patch = json!({"spec": {"replicas": replicas}});
            self.api.merge_patch(REPLICA_SETS, NS, &name, &patch);
            return;
        }
        let labels = json!({"app": "backend", "rollouts-pod-template-hash": hash});
        self.api.create(REPLICA_SETS, json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "api", "image": format!("backend:{hash}")}]}}}}));
    }

    fn argo_point(&self, service: &str, hash: &str) {
        let patch =
            json!({"spec": {"selector": {"app": "backend", "rollouts-pod-template-hash": hash}}});
        self.api.merge_patch(SERVICES, NS, service, &patch);
    }

    fn argo_weight(&self, canary: i32) {
        let weights = rollout_core::alb::ForwardWeights {
            canary_service: "backend-service-canary".into(),
            stable_service: "backend-service".into(),
            port: 80,
            canary_weight: canary,
        };
        let patch = json!({"metadata": {"annotations": {KEY: rollout_core::alb::forward_action(&weights)}}});
        self.api.merge_patch(INGRESSES, NS, "shop", &patch);
    }

    /// Argo's canary to promotion: the canary Service re-pointed and the
    /// weight set at once; at the end the stable Service switched and all
    /// weight back to it at once, the old pods scaled down after 2 s.
    fn argo_release(&mut self) {
        self.argo_replica_set("v2", 1);
        std::thread::sleep(Duration::from_secs(1));
        self.argo_point("backend-service-canary", "v2");
        self.argo_weight(25);
        std::thread::sleep(Duration::from_secs(5));
        self.argo_replica_set("v2", 2);
        std::thread::sleep(Duration::from_secs(1));
        self.argo_weight(50);
        std::thread::sleep(Duration::from_secs(5));
        self.argo_replica_set("v2", 4);
        std::thread::sleep(Duration::from_secs(1));
        self.argo_point("backend-service", "v2");
        self.argo_weight(0);
        std::thread::sleep(Duration::from_secs(2));
        self.argo_replica_set("v1", 0);
        std::thread::sleep(DEREGISTRATION + self.lag + HEALTH_CHECK);
    }
}

#[test]
fn argos_ordering_loses_requests_on_the_same_alb() {
    let runs: Vec<_> = LAGS
        .iter()
        .map(|lag| {
            let lag = *lag;
            std::thread::spawn(move || {
                let mut run = Run::deployed(Duration::from_secs(lag), false);
                run.argo_release();
                (lag, run.sim.report())
            })
        })
        .collect();
    let mut rows = Vec::new();
    for run in runs {
        let (lag, report) = run.join().expect("the replay panicked");
        rows.push(table_row("Argo's ordering, to promotion", lag, &report));
        assert!(
            report.no_healthy_target > 0,
            "lag {lag}s: Argo's ordering lost nothing: {report:#?}"
        );
    }
    eprintln!("{}", rows.join("\n"));
}
