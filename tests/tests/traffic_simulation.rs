//! Requests counted at a simulated ALB while the real `rollout-controller`
//! moves traffic (`gantry_tests::alb_sim`: the AWS Load Balancer Controller
//! and the ALB with AWS's timing, 200 requests a second): every scenario
//! of a canary — to promotion, aborted at 50%, a new image at 25%, rolled
//! back, the controller killed at every step — with the LB controller 0, 2
//! and 10 s late and 5 s health checks, on the fake API server (or the
//! cluster `KUBECONFIG` names, a namespace per run), loses no
//! request. Argo Rollouts' ordering, replayed by hand on the same cluster
//! and ALB, loses requests: the simulation can fail.
//!
//! Each scenario runs in every mode: with the controller reading the ALB
//! through ELBv2 (moto holds the load balancer, the tagged target groups
//! and the rule, whose weights the stand-in sets; DescribeTargetHealth is
//! answered from the simulated ALB, with AWS's `initial` and `draining`
//! states that moto lacks), in direct mode, and without (annotation-only
//! mode: it waits its settle time, the LB controller's lag plus the health
//! checks plus 2 s for polling, where it cannot see target health); and with the
//! pods carrying the LB controller's readiness gates (the fake plays its
//! webhook, the stand-in sets the gates): the settle time is then 30 s, and
//! the canary's first weight must move sooner, on the gates. The batches
//! run one after the other.
//!
//! The runs are independent and mostly waiting, so they run side by side;
//! the table of requests and failures is printed (`--nocapture`).
//! `GANTRY_SIM_ONLY=<Scenario>` runs one scenario (at every lag).

use std::time::{Duration, Instant};

use std::sync::{Arc, Condvar, Mutex};

use gantry_tests::alb_sim::{AlbHandle, AlbSim, Report, Route, RuleReader, Timing, Weights};
use gantry_tests::aws::{ALB_PRELUDE, AwsProxy, target_health_xml};
use gantry_tests::cluster::{Cluster, ingresses, replica_sets, rollouts, services};
use gantry_tests::controller::Controller;
use gantry_tests::free_port;
use gantry_tests::oci::Moto;
use kube::core::ApiResource;
use rollout_controller::elbv2::Elbv2;
use rollout_core::types::AlbDirect;
use serde_json::{Value, json};

const KEY: &str = "alb.ingress.kubernetes.io/actions.backend-service";
const HEALTH_CHECK: Duration = Duration::from_secs(5);
const DEREGISTRATION: Duration = Duration::from_secs(10);
const LAGS: [u64; 3] = [0, 2, 10];

/// Runs under way at once, across batches: two batches share the machine
/// when together they run at most this many (the Elbv2 and Direct batch
/// alone runs 30; each run is mostly waiting out AWS's timing).
const SEATS: usize = 45;

/// Seats taken by the batches running now.
static TAKEN: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Seats for `runs` runs, held until dropped.
struct Seats(usize);

impl Seats {
    fn take(runs: usize) -> Seats {
        let (taken, freed) = &TAKEN;
        let mut now = taken.lock().unwrap_or_else(|e| e.into_inner());
        while *now + runs > SEATS {
            now = freed.wait(now).unwrap_or_else(|e| e.into_inner());
        }
        *now += runs;
        Seats(runs)
    }
}

impl Drop for Seats {
    fn drop(&mut self) {
        let (taken, freed) = &TAKEN;
        *taken.lock().unwrap_or_else(|e| e.into_inner()) -= self.0;
        freed.notify_all();
    }
}

/// How the controller sees the ALB.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Only the Ingress and the EndpointSlices.
    Annotations,
    /// And the ELBv2 API.
    Elbv2,
    /// Direct mode: the controller sets the rule's weights itself.
    Direct,
    /// Only the Ingress and the EndpointSlices, the pods carrying the LB
    /// controller's readiness gates (the fake API server plays its
    /// webhook; a bare API server has none, so not with `KUBECONFIG`).
    ReadinessGates,
}

/// With readiness gates, the settle time is twice what the ALB takes at
/// the longest lag: a weight that moves sooner moved on a gate.
const GATED_SETTLE: Duration = Duration::from_secs(30);

/// The TargetGroupBindings the LB controller made for the two Services.
const BINDINGS: [(&str, &str); 2] = [
    ("k8s-shop-backends-5d1c0a9b7e", "backend-service"),
    ("k8s-shop-backends-8e2f4b6a1c", "backend-service-canary"),
];

fn bindings() -> ApiResource {
    ApiResource {
        group: "elbv2.k8s.aws".into(),
        version: "v1beta1".into(),
        api_version: "elbv2.k8s.aws/v1beta1".into(),
        kind: "TargetGroupBinding".into(),
        plural: "targetgroupbindings".into(),
    }
}

/// A VPC, the ALB, the two target groups tagged as the LB controller tags
/// them for Ingress `shop` in namespace `NS`, a listener and a rule
/// forwarding 0/100.
const SETUP: &str = r#"
alb = lb.create_load_balancer(Name='k8s-shop-sim', Subnets=subnets, Type='application', Scheme='internet-facing')['LoadBalancers'][0]
tgs = {}
for svc in ['backend-service', 'backend-service-canary']:
    tg = lb.create_target_group(Name=f'k8s-shop-{svc[-6:]}', Protocol='HTTP', Port=80, VpcId=vpc, TargetType='ip')['TargetGroups'][0]['TargetGroupArn']
    lb.add_tags(ResourceArns=[tg], Tags=[{'Key': 'ingress.k8s.aws/resource', 'Value': f'{NS}/shop-{svc}:80'}])
    tgs[svc] = tg
listener = lb.create_listener(LoadBalancerArn=alb['LoadBalancerArn'], Protocol='HTTP', Port=80,
    DefaultActions=[{'Type': 'fixed-response', 'FixedResponseConfig': {'StatusCode': '404'}}])['Listeners'][0]['ListenerArn']
rule = lb.create_rule(ListenerArn=listener, Priority=10, Conditions=[{'Field': 'path-pattern', 'Values': ['/*']}],
    Actions=[{'Type': 'forward', 'ForwardConfig': {'TargetGroups': [
        {'TargetGroupArn': tgs['backend-service-canary'], 'Weight': 0}, {'TargetGroupArn': tgs['backend-service'], 'Weight': 100}]}}])['Rules'][0]['RuleArn']
print(json.dumps({'dns': alb['DNSName'], 'canary': tgs['backend-service-canary'], 'stable': tgs['backend-service'], 'rule': rule}))
"#;

/// The ALB on moto, behind a proxy that answers DescribeTargetHealth.
struct Aws {
    _moto: Moto,
    proxy: AwsProxy,
    /// The ARNs of the rule and target groups, the load balancer's name.
    ids: Value,
    /// The controller sets the rule's weights (direct mode).
    direct: bool,
}

impl Aws {
    /// The ALB set up on a moto of its own, for the Ingress's namespace.
    fn new(cluster: &Cluster, direct: bool) -> Aws {
        let moto = Moto::start();
        let proxy = AwsProxy::start(&moto.endpoint());
        let script = format!(
            "E = '{}'\nNS = '{}'\n{ALB_PRELUDE}{SETUP}",
            moto.endpoint(),
            cluster.ns
        );
        let ids = moto.boto3_for("elbv2", &script);
        Aws {
            _moto: moto,
            proxy,
            ids,
            direct,
        }
    }

    fn id(&self, key: &str) -> String {
        self.ids[key].as_str().unwrap().to_string()
    }

    fn rule(&self) -> Rule {
        Rule {
            client: moto_client(&self._moto.endpoint()),
            direct: AlbDirect {
                listener_arn: None,
                rule_arn: Some(self.id("rule")),
                stable_target_group_arn: self.id("stable"),
                canary_target_group_arn: self.id("canary"),
            },
        }
    }

    /// Answers target health from `alb`; for the Ingress, sets the weights
    /// its listener applies on the rule (in direct mode the controller
    /// does, and `alb` reads them: `Rule::reader`).
    fn serve(&self, cluster: &Cluster, alb: AlbHandle) {
        let groups = [
            (self.id("canary"), "backend-service-canary"),
            (self.id("stable"), "backend-service"),
        ];
        let health = alb.clone();
        self.proxy.answer("DescribeTargetHealth", move |form| {
            let arn = &form.iter().find(|(k, _)| k == "TargetGroupArn")?.1;
            let service = groups.iter().find(|(a, _)| a == arn)?.1;
            Some(target_health_xml(&health.targets(service)))
        });
        if !self.direct {
            let hostname = self.id("dns");
            let status = json!({"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}});
            cluster.merge_patch(&ingresses(), "shop", &status, true);
            cluster.runtime().spawn(self.rule().follow(alb));
        }
    }

    /// `trafficRouting.alb.direct` for this ALB.
    fn direct(&self) -> Value {
        json!({"ruleArn": self.ids["rule"], "stableTargetGroupArn": self.ids["stable"],
               "canaryTargetGroupArn": self.ids["canary"]})
    }

    /// The controller's environment: AWS through the proxy.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.proxy.endpoint()),
            ("AWS_ACCESS_KEY_ID", "t".into()),
            ("AWS_SECRET_ACCESS_KEY", "t".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

/// An ELBv2 client of moto itself (not through the proxy).
fn moto_client(endpoint: &str) -> aws_sdk_elasticloadbalancingv2::Client {
    use aws_sdk_elasticloadbalancingv2::config::{BehaviorVersion, Credentials, Region};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = aws_sdk_elasticloadbalancingv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("t", "t", None, None, "sim"))
        .endpoint_url(endpoint)
        .http_client(rollout_metrics::aws_http_client())
        .build();
    aws_sdk_elasticloadbalancingv2::Client::from_conf(config)
}

/// The listener rule on moto.
struct Rule {
    client: aws_sdk_elasticloadbalancingv2::Client,
    /// The rule and its two groups, as direct mode names them.
    direct: AlbDirect,
}

impl Rule {
    /// Direct mode: reads the canary weight the controller set on the rule.
    fn reader(self) -> RuleReader {
        let rule = Arc::new(self);
        Arc::new(move || {
            let rule = rule.clone();
            Box::pin(async move {
                let d = &rule.direct;
                let arn = d.rule_arn.as_deref()?;
                let out = rule.client.describe_rules().rule_arns(arn).send().await;
                let found = out.ok()?.rules().first()?.clone();
                let weights = found.actions().iter().find_map(|a| {
                    let (canary, stable) = (&d.canary_target_group_arn, &d.stable_target_group_arn);
                    rollout_controller::elbv2::weights_in(a, canary, stable)
                });
                weights.map(|(canary, _)| canary)
            })
        })
    }

    /// What the LB controller does to the rule: the weights the simulated
    /// listener applies, set on moto's rule as they change (with the
    /// ModifyRule direct mode sends: the same forward action).
    async fn follow(self, alb: AlbHandle) {
        let elbv2 = Elbv2::new(self.client.clone());
        let mut applied = Some(0);
        loop {
            let weight = alb.weight();
            if let Some(w) = weight.filter(|_| weight != applied)
                && elbv2.set_direct(&self.direct, w).await.is_ok()
            {
                applied = weight;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Promotion,
    AbortAtHalf,
    NewImageAtQuarter,
    Rollback,
    RestartAtEveryStep,
}

/// One cluster, controller and ALB (dropped in this order: nothing is left
/// asking a server that is gone).
struct Run {
    controller: Option<Controller>,
    sim: AlbSim,
    aws: Option<Aws>,
    cluster: Cluster,
    dir: tempfile::TempDir,
    lag: Duration,
    mode: Option<Mode>,
    /// With readiness gates: from the canary Service's selector change to
    /// the first setWeight written, at the last release.
    first_weight: Option<Duration>,
}

impl Run {
    /// The app deployed on `backend:1` and served; counting starts now.
    /// `mode`: how the controller sees the ALB (`None`: no controller, the
    /// test moves traffic itself).
    fn deployed(name: &str, lag: Duration, mode: Option<Mode>) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("gantry-sim-{name}");
        let gated = mode == Some(Mode::ReadinessGates);
        let cluster = match gated {
            true => Cluster::with_readiness_gates(&name, dir.path()).expect("the fake API server"),
            false => Cluster::new(&name, dir.path()),
        };
        for name in ["backend-service", "backend-service-canary"] {
            cluster.create(
                &services(),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}}),
            );
        }
        if gated {
            for (binding, service) in BINDINGS {
                cluster.create(&bindings(), json!({"apiVersion": "elbv2.k8s.aws/v1beta1",
                    "kind": "TargetGroupBinding", "metadata": {"name": binding},
                    "spec": {"serviceRef": {"name": service, "port": 80}, "targetType": "ip",
                             "targetGroupARN": format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{binding}/0")}}));
            }
        }
        cluster.create(&ingresses(), json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}}));
        let aws = match mode {
            Some(Mode::Elbv2) => Some(Aws::new(&cluster, false)),
            Some(Mode::Direct) => Some(Aws::new(&cluster, true)),
            _ => None,
        };
        let weights = match aws.as_ref().filter(|a| a.direct) {
            Some(aws) => Weights::Rule(aws.rule().reader()),
            None => Weights::Ingress {
                name: "shop".into(),
                action_key: KEY.into(),
            },
        };
        let route = Route {
            namespace: cluster.ns.clone(),
            weights,
            stable: "backend-service".into(),
            canary: "backend-service-canary".into(),
            bindings: BINDINGS
                .iter()
                .filter(|_| gated)
                .map(|(b, s)| (b.to_string(), s.to_string()))
                .collect(),
        };
        let timing = Timing {
            lag,
            health_check: HEALTH_CHECK,
            deregistration: DEREGISTRATION,
        };
        let client = cluster.client.clone();
        let sim = cluster.block_on(async move { AlbSim::start(client, route, timing) });
        if let Some(aws) = &aws {
            aws.serve(&cluster, (*sim).clone());
        }
        let mut run = Run {
            controller: None,
            sim,
            aws,
            cluster,
            dir,
            lag,
            mode,
            first_weight: None,
        };
        if mode.is_some() {
            run.cluster.create(&rollouts(), run.rollout());
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
        let settle = match self.mode {
            Some(Mode::ReadinessGates) => GATED_SETTLE.as_secs(),
            _ => (self.lag + HEALTH_CHECK).as_secs() + 2,
        };
        let timing = json!({"settleSeconds": settle, "drainSeconds": DEREGISTRATION.as_secs()});
        let alb = match self.aws.as_ref().filter(|a| a.direct) {
            Some(aws) => json!({"direct": aws.direct(), "targetHealth": timing}),
            None => json!({"ingress": "shop", "servicePort": 80, "targetHealth": timing}),
        };
        json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "backend"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}},
                             "spec": {"containers": [{"name": "api", "image": "backend:1"}]}},
                "strategy": {"canary": {"canaryService": "backend-service-canary", "stableService": "backend-service",
                    "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                    "trafficRouting": {"alb": alb},
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "5s"}},
                              {"setWeight": 50}, {"pause": {}}]}}}})
    }

    fn start_controller(&mut self) {
        let ns = self.cluster.ns.as_str();
        let mut args = vec!["--namespace", ns, "--lease-namespace", ns];
        let env = self.aws.as_ref().map(Aws::env).unwrap_or_default();
        if self.aws.is_some() {
            args.extend(["--verify-alb-weights", "always"]);
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.controller = Some(Controller::start_on(
            &self.cluster.kubeconfig,
            self.dir.path(),
            free_port(),
            &args,
            &env,
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
        self.cluster
            .get(&rollouts(), "backend")
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
        self.cluster
            .list(&replica_sets())
            .iter()
            .filter(|rs| rs["metadata"]["labels"]["rollouts-pod-template-hash"] != keep)
            .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
            .sum()
    }

    fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
        self.cluster
            .merge_patch(&rollouts(), "backend", &patch, false);
    }

    fn human(&self, status: Value) {
        let patch = json!({ "status": status });
        self.cluster
            .merge_patch(&rollouts(), "backend", &patch, true);
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
        let pointed = self.canary_selected_at();
        self.set_image(image);
        if self.mode == Some(Mode::ReadinessGates) {
            self.wait("the canary Service re-pointed", |r| {
                r.canary_selected_at() != pointed
            });
            self.wait("the first setWeight", |r| r.written_weight() == Some(25));
            let at = self.canary_selected_at().expect("re-pointed");
            let at: k8s_openapi::jiff::Timestamp = at.parse().unwrap();
            let since = k8s_openapi::jiff::Timestamp::now().duration_since(at);
            self.first_weight = Some(since.unsigned_abs());
        }
        self.wait("the pause at 50%", |r| r.paused_at(3));
    }

    /// When the controller last pointed the canary Service.
    fn canary_selected_at(&self) -> Option<String> {
        let service = self.cluster.get(&services(), "backend-service-canary")?;
        let at = &service["metadata"]["annotations"]["gantry.dev/selected-at"];
        at.as_str().map(str::to_string)
    }

    /// The canary weight the controller wrote on the Ingress.
    fn written_weight(&self) -> Option<i32> {
        let ingress = self.cluster.get(&ingresses(), "shop")?;
        let action = ingress["metadata"]["annotations"][KEY].as_str()?;
        let action = rollout_core::alb::parse_action(action).ok()?;
        action.weight_of("backend-service-canary")
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
        "{what:<36} {lag:>4}s {:>9} {:>7} {:>5} {:>5} {:>5}",
        r.requests,
        r.failed(),
        r.no_healthy_target,
        r.pod_gone,
        r.drain_cut
    )
}

/// Every scenario at every lag in every one of `modes`, side by side; the
/// table printed; no request may fail.
fn every_scenario(modes: &[Mode]) {
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
    let gates_here = Cluster::with_readiness_gates_available();
    let modes: Vec<Mode> = modes
        .iter()
        .copied()
        .filter(|m| *m != Mode::ReadinessGates || gates_here)
        .collect();
    if modes.is_empty() {
        eprintln!(
            "skipped: readiness gates need the LB controller's webhook, which only the fake API server plays"
        );
        return;
    }
    let planned: Vec<_> = scenarios
        .flat_map(|s| LAGS.iter().map(move |lag| (s, *lag)))
        .flat_map(|(s, lag)| modes.clone().into_iter().map(move |m| (m, s, lag)))
        .collect();
    let _seats = Seats::take(planned.len());
    let runs: Vec<_> = planned
        .into_iter()
        .map(|(mode, scenario, lag)| {
            std::thread::spawn(move || {
                let name = format!("{mode:?}-{scenario:?}-{lag}").to_lowercase();
                let mut run = Run::deployed(&name, Duration::from_secs(lag), Some(mode));
                run.play(scenario);
                if let Some(aws) = &run.aws {
                    let asked = aws.proxy.take_calls();
                    let health = asked.iter().filter(|c| c.action == "DescribeTargetHealth");
                    assert!(
                        health.count() > 0,
                        "{scenario:?} at {lag}s: target health never read"
                    );
                }
                if let Some(first) = run.first_weight {
                    eprintln!("{scenario:?} at {lag}s: the first setWeight {first:.1?} after the canary Service was pointed");
                    // Its pods healthy in the canary's group (lag + 5 s
                    // health checks), not the settle time, let it move.
                    assert!(
                        first < GATED_SETTLE,
                        "{scenario:?} at {lag}s: the first weight moved {first:?} after the canary Service, not on the readiness gates"
                    );
                }
                (mode, scenario, lag, run.sim.report())
            })
        })
        .collect();
    let mut rows = vec![format!(
        "{:<36} {:>5} {:>9} {:>7} {:>5} {:>5} {:>5}",
        "SCENARIO (MODE)", "LAG", "REQUESTS", "FAILED", "503", "502", "DRAIN"
    )];
    let mut lost = Vec::new();
    for run in runs {
        let (mode, scenario, lag, report) = run.join().expect("a scenario panicked");
        let what = format!("{scenario:?} ({mode:?})");
        rows.push(table_row(&what, lag, &report));
        assert!(report.requests > 0, "{what} at {lag}s sent nothing");
        if report.failed() > 0 {
            lost.push(format!("{what} at {lag}s: {:#?}", report.first));
        }
    }
    eprintln!("{}", rows.join("\n"));
    assert!(lost.is_empty(), "{}", lost.join("\n"));
}

#[test]
fn no_request_is_lost_reading_target_health_from_elbv2() {
    every_scenario(&[Mode::Elbv2, Mode::Direct]);
}

#[test]
fn no_request_is_lost_in_annotation_only_mode() {
    every_scenario(&[Mode::Annotations]);
}

#[test]
fn no_request_is_lost_with_readiness_gates() {
    every_scenario(&[Mode::ReadinessGates]);
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
        if self.cluster.get(&replica_sets(), &name).is_some() {
            let patch = json!({"spec": {"replicas": replicas}});
            self.cluster
                .merge_patch(&replica_sets(), &name, &patch, false);
            return;
        }
        let labels = json!({"app": "backend", "rollouts-pod-template-hash": hash});
        self.cluster.create(&replica_sets(), json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "api", "image": format!("backend:{hash}")}]}}}}));
    }

    fn argo_point(&self, service: &str, hash: &str) {
        let patch =
            json!({"spec": {"selector": {"app": "backend", "rollouts-pod-template-hash": hash}}});
        self.cluster
            .merge_patch(&services(), service, &patch, false);
    }

    fn argo_weight(&self, canary: i32) {
        let weights = rollout_core::alb::ForwardWeights {
            canary_service: "backend-service-canary".into(),
            stable_service: "backend-service".into(),
            port: 80,
            canary_weight: canary,
            stickiness: None,
        };
        let patch = json!({"metadata": {"annotations": {KEY: rollout_core::alb::forward_action(&weights)}}});
        self.cluster
            .merge_patch(&ingresses(), "shop", &patch, false);
    }

    /// Argo's canary to its pause at 50%: the canary Service re-pointed and
    /// the weight set at once.
    fn argo_to_half(&mut self, hash: &str) {
        self.argo_replica_set(hash, 1);
        std::thread::sleep(Duration::from_secs(1));
        self.argo_point("backend-service-canary", hash);
        self.argo_weight(25);
        std::thread::sleep(Duration::from_secs(5));
        self.argo_replica_set(hash, 2);
        std::thread::sleep(Duration::from_secs(1));
        self.argo_weight(50);
        std::thread::sleep(Duration::from_secs(5));
    }

    /// Argo's ordering in `scenario`, as its open issues describe it.
    fn argo_play(&mut self, scenario: Scenario) {
        match scenario {
            // argo-rollouts#4433, #2864: at the end the stable Service is
            // switched and all weight sent back at once; the old pods go
            // after the scale-down delay.
            Scenario::Promotion => {
                self.argo_to_half("v2");
                self.argo_replica_set("v2", 4);
                std::thread::sleep(Duration::from_secs(1));
                self.argo_point("backend-service", "v2");
                self.argo_weight(0);
                std::thread::sleep(Duration::from_secs(2));
                self.argo_replica_set("v1", 0);
            }
            // #3758: on abort the canary Service's selector flips to the
            // stable pods as the weight goes back; the canary goes after
            // the abort scale-down delay.
            Scenario::AbortAtHalf | Scenario::Rollback => {
                self.argo_to_half("v2");
                self.argo_point("backend-service-canary", "v1");
                self.argo_weight(0);
                std::thread::sleep(Duration::from_secs(2));
                self.argo_replica_set("v2", 0);
            }
            // #3617: a new image at 25% scales the intermediate canary down
            // while its 25% still flows, re-pointing the canary Service.
            Scenario::NewImageAtQuarter => {
                self.argo_replica_set("v2", 1);
                std::thread::sleep(Duration::from_secs(1));
                self.argo_point("backend-service-canary", "v2");
                self.argo_weight(25);
                std::thread::sleep(Duration::from_secs(5));
                self.argo_replica_set("v3", 1);
                self.argo_replica_set("v2", 0);
                std::thread::sleep(Duration::from_secs(1));
                self.argo_point("backend-service-canary", "v3");
            }
            Scenario::RestartAtEveryStep => unreachable!("a controller restart is not an ordering"),
        }
        std::thread::sleep(DEREGISTRATION + self.lag + HEALTH_CHECK);
    }
}

#[test]
fn argos_ordering_loses_requests_on_the_same_alb() {
    let scenarios = [
        Scenario::Promotion,
        Scenario::AbortAtHalf,
        Scenario::NewImageAtQuarter,
    ];
    let _seats = Seats::take(scenarios.len() * LAGS.len());
    let runs: Vec<_> = scenarios
        .into_iter()
        .flat_map(|s| LAGS.iter().map(move |lag| (s, *lag)))
        .map(|(scenario, lag)| {
            std::thread::spawn(move || {
                let name = format!("argo-{scenario:?}-{lag}").to_lowercase();
                let mut run = Run::deployed(&name, Duration::from_secs(lag), None);
                run.argo_play(scenario);
                (scenario, lag, run.sim.report())
            })
        })
        .collect();
    let mut rows = Vec::new();
    for run in runs {
        let (scenario, lag, report) = run.join().expect("the replay panicked");
        rows.push(table_row(
            &format!("Argo's ordering, {scenario:?}"),
            lag,
            &report,
        ));
        assert!(
            report.failed() > 0,
            "{scenario:?} at {lag}s: Argo's ordering lost nothing: {report:#?}"
        );
    }
    eprintln!("{}", rows.join("\n"));
}
