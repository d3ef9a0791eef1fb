//! The AWS Load Balancer Controller and the ALB, simulated against any API
//! server (the fake one, or a real cluster with `KUBECONFIG`), with AWS's
//! timing from `rollout_core::simulate::Lb`: the stand-in watches the
//! Ingress's forward action (or, in direct mode, takes the weights set on
//! the rule through the ELBv2 API, applied at once) and the EndpointSlices
//! of the two Services, and mirrors them `lag` late; a registered target is `initial` until its
//! health checks pass, a deregistered one `draining` for the deregistration
//! delay (moto's ELBv2 has neither state, so they are modelled here).
//!
//! Like the LB controller (v2.4.1 on), it registers every pod behind a
//! Service whose containers are ready, and sets the conditions of the pod
//! readiness gates it owns (`Route::bindings`): true once the pod is a
//! healthy target in the gate's group, false while it is not, untouched
//! once the pod left the group's Service; playing the kubelet, it then
//! sets the pod Ready when all its gates passed.
//!
//! The data plane sends `RATE` requests a second by the weights the
//! listener applies, each to a healthy target of the chosen group, and
//! counts a failure for: a group with no healthy target (503), a target
//! whose pod is gone or not serving (502: its containers not ready, or
//! being deleted; a readiness gate still waiting does not stop a pod from
//! answering), and a target still draining when its pod was deleted (its
//! requests in flight).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams};
use rollout_core::alb::parse_action;
use rollout_core::simulate::Lb;
use rollout_core::world::{TargetState, TargetView};

/// The condition type of the LB controller's readiness gates, before the
/// binding's name.
pub const GATE_PREFIX: &str = "target-health.elbv2.k8s.aws/";

/// Requests a second.
pub const RATE: f64 = 200.0;
const TICK: Duration = Duration::from_millis(100);

/// What the simulated ALB routes: where its weights come from and the two
/// Services it forwards to.
#[derive(Clone)]
pub struct Route {
    pub namespace: String,
    pub weights: Weights,
    pub stable: String,
    pub canary: String,
    /// The TargetGroupBindings whose readiness gates the LB controller
    /// sets: (binding, its Service).
    pub bindings: Vec<(String, String)>,
}

/// Where the listener's weights come from.
#[derive(Clone)]
pub enum Weights {
    /// An Ingress's forward action, applied by the LB controller `lag` late.
    Ingress { name: String, action_key: String },
    /// The canary weight set on the rule through the ELBv2 API (direct
    /// mode), as this reads it: applied at once.
    Rule(RuleReader),
}

/// Reads the canary weight on the listener rule.
pub type RuleReader = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<i32>> + Send>>
        + Send
        + Sync,
>;

/// The LB controller's lag, the health checks, the deregistration delay.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lag: Duration,
    pub health_check: Duration,
    pub deregistration: Duration,
}

/// The requests sent and failed so far.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub requests: u64,
    /// 503: the chosen group had no healthy target.
    pub no_healthy_target: u64,
    /// 502: the target's pod was gone or not Ready.
    pub pod_gone: u64,
    /// A draining target's pod deleted before its drain ended.
    pub drain_cut: u64,
    /// The first failures, with when and why.
    pub first: Vec<String>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.no_healthy_target + self.pod_gone + self.drain_cut
    }

    fn fail(&mut self, now: Timestamp, why: String) {
        if self.first.len() < 10 {
            self.first.push(format!("{now}: {why}"));
        }
    }
}

#[derive(Default)]
struct State {
    lb: Lb,
    report: Report,
    /// Pods by IP.
    pods: BTreeMap<String, Seen>,
}

/// A pod as the simulation reads it.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    /// Its containers ready, and not being deleted.
    serving: bool,
    /// Its conditions, when it carries readiness gates (their condition
    /// types listed in `gates`).
    conditions: Vec<PodCondition>,
    gates: Vec<String>,
}

/// The running stand-in and data plane; stops when dropped. Read it
/// through its handle (`Deref`), which can also be shared (e.g. with a
/// fake ELBv2 answering DescribeTargetHealth).
pub struct AlbSim {
    handle: AlbHandle,
    task: tokio::task::JoinHandle<()>,
}

/// What the simulated ALB holds and counted.
#[derive(Clone)]
pub struct AlbHandle {
    state: Arc<Mutex<State>>,
}

impl AlbSim {
    pub fn start(client: kube::Client, route: Route, timing: Timing) -> AlbSim {
        let lb = Lb::new(
            signed(timing.lag),
            signed(timing.health_check),
            signed(timing.deregistration),
        );
        let state = Arc::new(Mutex::new(State {
            lb,
            ..Default::default()
        }));
        let task = tokio::spawn(run(client, route, state.clone()));
        AlbSim {
            handle: AlbHandle { state },
            task,
        }
    }
}

impl std::ops::Deref for AlbSim {
    type Target = AlbHandle;
    fn deref(&self) -> &AlbHandle {
        &self.handle
    }
}

impl AlbHandle {
    pub fn report(&self) -> Report {
        self.state.lock().unwrap().report.clone()
    }

    /// Forgets what was counted (e.g. before the first version was up).
    pub fn reset(&self) {
        self.state.lock().unwrap().report = Report::default();
    }

    /// The targets of `service`'s group and their states, as ELBv2's
    /// DescribeTargetHealth would show them.
    pub fn targets(&self, service: &str) -> Vec<TargetView> {
        self.state.lock().unwrap().lb.targets(service)
    }

    /// The canary weight the listener applies.
    pub fn weight(&self) -> Option<i32> {
        self.state.lock().unwrap().lb.weight()
    }
}

impl Drop for AlbSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).expect("a short duration")
}

/// Every tick: what the cluster shows, the LB controller's and the ALB's
/// changes due by now, and the requests due by now.
async fn run(client: kube::Client, route: Route, state: Arc<Mutex<State>>) {
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &route.namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &route.namespace);
    let pods: Api<Pod> = Api::namespaced(client, &route.namespace);
    let started = Instant::now();
    let mut plane = Plane::default();
    loop {
        let seen = observe(&ingresses, &slices, &pods, &route).await;
        let now = Timestamp::now();
        let gates = {
            let mut s = state.lock().unwrap();
            if let Some((weight, registered, live)) = seen {
                for (service, ips) in registered {
                    s.lb.see_endpoints(now, &service, ips);
                }
                match (&route.weights, weight) {
                    (Weights::Ingress { .. }, Some(w)) => s.lb.see_weight(now, w),
                    (Weights::Rule(_), Some(w)) => s.lb.set_weight(w),
                    (_, None) => {}
                }
                s.pods = live;
            }
            s.lb.catch_up(now);
            let due = (started.elapsed().as_secs_f64() * RATE) as u64;
            plane.send(&mut s, &route, now, due);
            gate_changes(&s, &route, now)
        };
        for (pod, conditions) in gates {
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            let params = PatchParams::default();
            // A pod gone meanwhile has nothing to gate.
            let _ = pods
                .patch_status(&pod, &params, &Patch::Merge(&patch))
                .await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The readiness gates whose condition the LB controller changes now:
/// each pod's new conditions (its gate set as its target's health in the
/// gate's group, if registered there; Ready once all gates passed).
fn gate_changes(s: &State, route: &Route, now: Timestamp) -> Vec<(String, Vec<PodCondition>)> {
    let mut changes = Vec::new();
    for (ip, pod) in s.pods.iter().filter(|(_, p)| !p.gates.is_empty()) {
        let mut conditions = pod.conditions.clone();
        let mut changed = false;
        for (binding, service) in &route.bindings {
            let kind = format!("{GATE_PREFIX}{binding}");
            if !pod.gates.contains(&kind) {
                continue;
            }
            let healthy = match s.lb.state(service, ip) {
                None | Some(TargetState::Draining) => continue,
                Some(state) => state == TargetState::Healthy,
            };
            changed |= set_condition(&mut conditions, &kind, healthy, now);
        }
        let passed = pod.gates.iter().all(|g| has(&conditions, g));
        changed |= set_condition(&mut conditions, "Ready", pod.serving && passed, now);
        if changed {
            changes.push((pod.name.clone(), conditions));
        }
    }
    changes
}

fn has(conditions: &[PodCondition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// Sets condition `kind` to `value`; whether it changed.
fn set_condition(
    conditions: &mut Vec<PodCondition>,
    kind: &str,
    value: bool,
    now: Timestamp,
) -> bool {
    if has(conditions, kind) == value && conditions.iter().any(|c| c.type_ == kind) {
        return false;
    }
    conditions.retain(|c| c.type_ != kind);
    conditions.push(PodCondition {
        type_: kind.to_string(),
        status: if value { "True" } else { "False" }.to_string(),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    true
}

type Observed = (
    Option<i32>,
    Vec<(String, BTreeSet<String>)>,
    BTreeMap<String, Seen>,
);

/// The Ingress's canary weight, the pod IPs the LB controller registers
/// for each Service (ready, or with their containers ready), the live
/// pods; `None` when the API could not be read just now.
async fn observe(
    ingresses: &Api<Ingress>,
    slices: &Api<EndpointSlice>,
    pods: &Api<Pod>,
    route: &Route,
) -> Option<Observed> {
    let live = live_pods(pods).await?;
    let mut registered = Vec::new();
    for service in [&route.stable, &route.canary] {
        let selector = format!("kubernetes.io/service-name={service}");
        let list = slices
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        let ips = list
            .items
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter_map(|e| e.addresses.first())
            .filter(|ip| live.get(*ip).is_some_and(|p| p.serving))
            .cloned()
            .collect();
        registered.push((service.clone(), ips));
    }
    // The weights are read last: a Service re-pointed after a weight change
    // the controller verified is then seen with that change.
    let weight = match &route.weights {
        Weights::Ingress { name, action_key } => {
            let ingress = ingresses.get(name).await.ok()?;
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(action_key))
                .and_then(|json| parse_action(json).ok())
                .and_then(|a| a.weight_of(&route.canary))
        }
        Weights::Rule(read) => read().await,
    };
    Some((weight, registered, live))
}

/// The pods by IP.
async fn live_pods(pods: &Api<Pod>) -> Option<BTreeMap<String, Seen>> {
    let live = pods
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .filter_map(|p| {
            let gates: Vec<String> = p
                .spec
                .and_then(|s| s.readiness_gates)
                .into_iter()
                .flatten()
                .map(|g| g.condition_type)
                .filter(|t| t.starts_with(GATE_PREFIX))
                .collect();
            let status = p.status?;
            let conditions = status.conditions.unwrap_or_default();
            // A real kubelet reports ContainersReady; a played one may
            // report Ready alone.
            let containers = ["ContainersReady", "Ready"]
                .iter()
                .find_map(|k| conditions.iter().find(|c| c.type_ == *k))
                .is_some_and(|c| c.status == "True");
            let seen = Seen {
                name: p.metadata.name?,
                serving: containers && p.metadata.deletion_timestamp.is_none(),
                conditions: if gates.is_empty() {
                    Vec::new()
                } else {
                    conditions
                },
                gates,
            };
            Some((status.pod_ip?, seen))
        })
        .collect();
    Some(live)
}

/// The data plane's memory between ticks.
#[derive(Default)]
struct Plane {
    sent: u64,
    /// Weighted choice: the canary gets `weight` of every 100 requests.
    share: i32,
    /// Round-robin position in each group.
    next: u64,
    /// Draining targets whose pod was alive at the last tick.
    draining: BTreeSet<String>,
}

impl Plane {
    /// Sends the requests due by `due` in all.
    fn send(&mut self, s: &mut State, route: &Route, now: Timestamp, due: u64) {
        self.cut_drains(s, route, now);
        let Some(weight) = s.lb.weight() else {
            self.sent = due;
            return;
        };
        let groups = [
            (route.canary.clone(), s.lb.targets(&route.canary)),
            (route.stable.clone(), s.lb.targets(&route.stable)),
        ];
        while self.sent < due {
            self.sent += 1;
            self.share += weight;
            let (service, targets) = if self.share >= 100 {
                self.share -= 100;
                &groups[0]
            } else {
                &groups[1]
            };
            s.report.requests += 1;
            let healthy: Vec<&TargetView> = targets
                .iter()
                .filter(|t| t.state == TargetState::Healthy)
                .collect();
            if healthy.is_empty() {
                s.report.no_healthy_target += 1;
                s.report
                    .fail(now, format!("503: no healthy target in {service}'s group"));
                continue;
            }
            self.next += 1;
            let target = healthy[(self.next % healthy.len() as u64) as usize];
            match s.pods.get(&target.id) {
                Some(pod) if pod.serving => {}
                pod => {
                    s.report.pod_gone += 1;
                    let why = match pod {
                        Some(p) => format!("502: pod {} ({}) not serving", p.name, target.id),
                        None => format!("502: no pod at {}", target.id),
                    };
                    s.report.fail(now, why);
                }
            }
        }
    }

    /// A draining target whose pod disappeared loses its requests in flight.
    fn cut_drains(&mut self, s: &mut State, route: &Route, now: Timestamp) {
        let draining: BTreeSet<String> = [&route.stable, &route.canary]
            .iter()
            .flat_map(|g| s.lb.targets(g))
            .filter(|t| t.state == TargetState::Draining)
            .map(|t| t.id)
            .collect();
        for ip in self.draining.intersection(&draining) {
            if !s.pods.contains_key(ip) {
                s.report.drain_cut += 1;
                s.report
                    .fail(now, format!("pod at {ip} deleted while draining"));
            }
        }
        self.draining = draining
            .into_iter()
            .filter(|ip| s.pods.contains_key(ip))
            .collect();
    }
}
