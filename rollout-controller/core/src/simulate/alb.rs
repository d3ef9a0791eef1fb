//! The ALB and the AWS Load Balancer Controller as the simulation runs
//! them, with AWS's timing: the LB controller mirrors each Service's ready
//! endpoints into its target group and the Ingress weights onto the
//! listener rule `lag` late; a registered target is `initial` until its
//! health checks pass (`health_check`), a deregistered one `draining` for
//! `deregistration`. The ALB exists whether or not the controller can see
//! it: `world.alb` shows it only when AWS is watched.
//!
//! After every change it checks what the ALB's data plane would do: weight
//! (or a header route) on a target group with no healthy target of a ready
//! pod (503), and a pod deleted while it is a healthy target of a group
//! with weight or a header route, or still draining (502).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::alb::routes::{HeaderCondition, carried_conditions};
use crate::validate::plan_of;
use crate::world::{EndpointView, HealthGate, PodView, TargetState, TargetView};

use super::Simulation;

/// The LB controller's and the ALB's timing, and what they hold now.
#[derive(Debug, Clone, Default)]
pub struct Lb {
    /// The LB controller's reaction to an Ingress or EndpointSlice change.
    pub lag: SignedDuration,
    /// From registration until a target is `healthy`.
    pub health_check: SignedDuration,
    /// How long a deregistered target is `draining`.
    pub deregistration: SignedDuration,
    /// Target groups by Service: target (pod IP) → state and since when.
    groups: BTreeMap<String, BTreeMap<String, (TargetState, Timestamp)>>,
    /// The endpoints and weight the LB controller last saw.
    seen: BTreeMap<String, BTreeSet<String>>,
    seen_weight: Option<i32>,
    seen_routes: Vec<Vec<HeaderCondition>>,
    /// The canary weight the listener rule applies (ingress mode).
    weight: Option<i32>,
    /// The header routes' rules the ALB applies (conditions, canonical):
    /// matching requests go to the canary's group.
    routes: Vec<Vec<HeaderCondition>>,
    /// Changes the LB controller will have made by then, in order.
    pending: Vec<(Timestamp, Change)>,
}

#[derive(Debug, Clone)]
enum Change {
    Targets(String, BTreeSet<String>),
    Weight(i32),
    Routes(Vec<Vec<HeaderCondition>>),
}

/// A simulated pod's IP, from the counter in its name.
pub fn pod_ip(pod: &PodView) -> String {
    let n = pod_number(pod);
    format!("10.0.{}.{}", n / 250, n % 250 + 1)
}

/// Whether a Service selecting `hash` (None: every pod of the app)
/// selects `pod`.
fn selects(hash: &Option<String>, pod: &PodView) -> bool {
    hash.as_ref().is_none_or(|h| *h == pod.hash)
}

/// The creation counter in a simulated pod's name: older pods first.
fn pod_number(pod: &PodView) -> u32 {
    pod.name
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Simulation {
    /// The Services' EndpointSlices and the LB controller's view of them,
    /// then what the LB controller and the ALB did by now; again, when a
    /// readiness gate that passed made a pod Ready, so that the LB
    /// controller sees that at once.
    pub(super) fn sync_traffic(&mut self) {
        self.stop_pods();
        self.sync_endpoints();
        self.sync_lb();
        if self.readiness_gates {
            self.sync_endpoints();
            self.sync_lb();
        }
    }

    /// The pods' ReplicaSets and readiness, as the Services' EndpointSlices
    /// list them: a ReplicaSet's first `available` pods have their
    /// containers ready (the kubelet's part; the ReplicaSet's counts stay
    /// the kubelet's in this model), and are Ready once every readiness
    /// gate they carry passed. The LB controller sets a gate's condition
    /// while the pod is behind the gate's Service and registered in its
    /// group (a healthy target or not), and leaves it as it was once the
    /// pod left: a pod that comes back keeps its old condition until the
    /// LB controller registers it again.
    fn sync_endpoints(&mut self) {
        let up = self.containers_ready();
        let services: Vec<(String, Option<String>)> =
            [&self.world.stable_service, &self.world.canary_service]
                .into_iter()
                .flatten()
                .map(|s| (s.name.clone(), s.hash.clone()))
                .collect();
        self.set_gates(&up, &services);
        let mut views = Vec::new();
        for (service, hash) in &services {
            let mut endpoints = Vec::new();
            for p in self.world.pods.iter().filter(|p| selects(hash, p)) {
                let Some(up) = up.get(&p.name).copied() else {
                    continue;
                };
                let gates = self.gates.get(&p.name);
                endpoints.push(EndpointView {
                    ready: up && gates.is_none_or(|g| g.values().all(|g| g.healthy)),
                    health_gate: gates.and_then(|g| g.get(service)).copied(),
                    ip: pod_ip(p),
                    pod: Some(p.name.clone()),
                });
            }
            views.push(endpoints);
        }
        let w = &mut self.world;
        for (s, endpoints) in [&mut w.stable_service, &mut w.canary_service]
            .into_iter()
            .flatten()
            .zip(views)
        {
            s.endpoints = endpoints;
        }
    }

    /// Whether each pod's containers are ready (and it is not terminating).
    fn containers_ready(&self) -> BTreeMap<String, bool> {
        let mut up = BTreeMap::new();
        for rs in &self.world.replica_sets {
            let mut pods: Vec<&PodView> = self
                .world
                .pods
                .iter()
                .filter(|p| p.hash == rs.hash && !p.terminating)
                .collect();
            pods.sort_by_key(|p| pod_number(p));
            for (i, p) in pods.iter().enumerate() {
                up.insert(p.name.clone(), (i as i32) < rs.available);
            }
        }
        up
    }

    /// The LB controller's part in the gates: for each pod behind a
    /// Service (`services`: name, selected hash) whose containers are ready
    /// and which it registered in the Service's group, the gate for that
    /// group follows the target's health.
    fn set_gates(&mut self, up: &BTreeMap<String, bool>, services: &[(String, Option<String>)]) {
        let now = self.world.now;
        for p in &self.world.pods {
            let Some(gates) = self.gates.get_mut(&p.name) else {
                continue;
            };
            if up.get(&p.name) != Some(&true) {
                continue;
            }
            for (service, hash) in services {
                let Some(gate) = gates.get_mut(service).filter(|_| selects(hash, p)) else {
                    continue;
                };
                // Only once the LB controller has registered the pod there
                // (`lag` after it joined the Service).
                let healthy = match self.lb.state(service, &pod_ip(p)) {
                    None | Some(TargetState::Draining) => continue,
                    Some(state) => state == TargetState::Healthy,
                };
                if gate.healthy != healthy {
                    *gate = HealthGate {
                        healthy,
                        since: Some(now),
                    };
                }
            }
        }
    }

    /// What the LB controller and the ALB have done by now.
    fn sync_lb(&mut self) {
        let Some(plan) = plan_of(&self.rollout).ok() else {
            return;
        };
        let Some(alb) = &plan.alb else {
            return;
        };
        if !self.lb_controller {
            return;
        }
        let now = self.world.now;
        // The LB controller registers the pods behind a Service whose
        // containers are ready (Ready, or waiting for a readiness gate).
        let up = self.containers_ready();
        for service in [&plan.stable_service, &plan.canary_service] {
            let pods = [&self.world.stable_service, &self.world.canary_service]
                .into_iter()
                .flatten()
                .filter(|s| s.name == *service)
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.pod.as_ref().and_then(|p| up.get(p)) == Some(&true))
                .map(|e| e.ip.clone())
                .collect();
            self.lb.see_endpoints(now, service, pods);
        }
        if alb.direct.is_none()
            && let Some(w) = self.canary_weight()
        {
            self.lb.see_weight(now, w);
        }
        if let Some(first) = self.world.ingresses.first() {
            self.lb.see_routes(now, carried_conditions(first, alb));
        }
        self.lb.catch_up(now);
        self.show_lb(
            &plan.stable_service,
            &plan.canary_service,
            alb.direct.is_none(),
        );
    }

    /// `world.alb`, when AWS is watched, shows the ALB as it is.
    fn show_lb(&mut self, stable: &str, canary: &str, ingress_mode: bool) {
        let (stable_targets, canary_targets) = (self.lb.targets(stable), self.lb.targets(canary));
        let weight = self.lb.weight;
        if let Some(Ok(observed)) = &mut self.world.alb {
            observed.stable_targets = Some(stable_targets);
            observed.canary_targets = Some(canary_targets);
            observed.header_routes = self.lb.routes.clone();
            observed.header_routes_anywhere = self.lb.routes.clone();
            if ingress_mode && let Some(w) = weight {
                observed.weights = Some((w, 100 - w));
            }
        }
    }

    /// When the LB controller or the ALB next change something, or a
    /// terminating pod exits (after now).
    pub(super) fn next_lb_change(&self) -> Option<Timestamp> {
        let lb = self
            .lb_controller
            .then(|| self.lb.next_change(self.world.now))
            .flatten();
        let exit = self.next_pod_exit().filter(|t| *t > self.world.now);
        lb.into_iter().chain(exit).min()
    }

    /// The ALB's data plane now: every group with weight has a healthy
    /// target that is a ready pod (from the first deploy's completion on:
    /// before, nothing served and nothing can be lost).
    pub(super) fn check_lb(&mut self) {
        let Some(plan) = plan_of(&self.rollout).ok() else {
            return;
        };
        let deployed = self.status().is_some_and(|s| s.stable_rs.is_some());
        if plan.alb.is_none() || !deployed {
            return;
        }
        let Some(canary) =
            self.applied_weight(plan.alb.as_ref().is_some_and(|a| a.direct.is_some()))
        else {
            return;
        };
        for (service, weight) in [
            (&plan.canary_service, canary),
            (&plan.stable_service, 100 - canary),
        ] {
            let routed = *service == plan.canary_service && !self.lb.routes.is_empty();
            if weight == 0 && !routed {
                continue;
            }
            let serving = self.lb.groups.get(service).is_some_and(|g| {
                g.iter()
                    .any(|(ip, (state, _))| *state == TargetState::Healthy && self.ready_pod(ip))
            });
            if !serving {
                let routes = if routed { " and header routes" } else { "" };
                self.violations.push(format!(
                    "{weight}% of traffic{routes} to {service}'s target group with no healthy target at {}",
                    self.world.now
                ));
            }
        }
    }

    /// A pod is about to be deleted (or, `graceful`, exits at the end of
    /// its preStop sleep, finishing what it was given): no new request may
    /// still reach it.
    pub(super) fn check_pod_removal(&mut self, pod: &PodView, graceful: bool) {
        let Some(plan) = plan_of(&self.rollout).ok() else {
            return;
        };
        if plan.alb.is_none() {
            return;
        }
        let ip = pod_ip(pod);
        let direct = plan.alb.as_ref().is_some_and(|a| a.direct.is_some());
        let canary = self.applied_weight(direct).unwrap_or(0);
        for (service, weight) in [
            (&plan.canary_service, canary),
            (&plan.stable_service, 100 - canary),
        ] {
            let state = self
                .lb
                .groups
                .get(service)
                .and_then(|g| g.get(&ip))
                .map(|t| t.0);
            let routed = *service == plan.canary_service && !self.lb.routes.is_empty();
            let live = match state {
                Some(TargetState::Draining) => !graceful,
                Some(TargetState::Healthy) => weight > 0 || routed,
                _ => false,
            };
            if live {
                self.violations.push(format!(
                    "deleted pod {} while it is a {:?} target of {service}'s target group ({weight}% of traffic) at {}",
                    pod.name, state.unwrap_or(TargetState::Unused), self.world.now
                ));
            }
        }
    }

    /// The canary weight the ALB applies.
    fn applied_weight(&self, direct: bool) -> Option<i32> {
        if direct {
            return self.aws_canary_weight();
        }
        self.lb.weight
    }

    fn ready_pod(&self, ip: &str) -> bool {
        self.world
            .pods
            .iter()
            .any(|p| pod_ip(p) == ip && !p.terminating && self.pod_available(p))
    }

    fn pod_available(&self, pod: &PodView) -> bool {
        let Some(rs) = self.world.replica_sets.iter().find(|r| r.hash == pod.hash) else {
            return false;
        };
        let older = self
            .world
            .pods
            .iter()
            .filter(|p| p.hash == pod.hash && !p.terminating && pod_number(p) < pod_number(pod))
            .count();
        (older as i32) < rs.available
    }
}

impl Lb {
    pub fn new(
        lag: SignedDuration,
        health_check: SignedDuration,
        deregistration: SignedDuration,
    ) -> Lb {
        Lb {
            lag,
            health_check,
            deregistration,
            ..Default::default()
        }
    }

    /// The LB controller sees the pod IPs it registers for `service` now
    /// (those whose containers are ready): it mirrors them into the target
    /// group `lag` later.
    pub fn see_endpoints(&mut self, now: Timestamp, service: &str, ready: BTreeSet<String>) {
        if self.seen.get(service) != Some(&ready) {
            self.seen.insert(service.to_string(), ready.clone());
            let change = Change::Targets(service.to_string(), ready);
            self.pending.push((now + self.lag, change));
        }
    }

    /// The LB controller sees the Ingress's canary weight now: the listener
    /// rule applies it `lag` later.
    pub fn see_weight(&mut self, now: Timestamp, canary: i32) {
        if self.seen_weight != Some(canary) {
            self.seen_weight = Some(canary);
            self.pending.push((now + self.lag, Change::Weight(canary)));
        }
    }

    /// The LB controller sees the header routes the Ingress carries now:
    /// their rules change `lag` later.
    pub fn see_routes(&mut self, now: Timestamp, routes: Vec<Vec<HeaderCondition>>) {
        if self.seen_routes != routes {
            self.seen_routes = routes.clone();
            self.pending.push((now + self.lag, Change::Routes(routes)));
        }
    }

    /// A weight set on the rule through the ELBv2 API (direct mode): the
    /// listener applies it at once.
    pub fn set_weight(&mut self, canary: i32) {
        self.weight = Some(canary);
    }

    /// Everything the LB controller and the ALB have done by `now`.
    pub fn catch_up(&mut self, now: Timestamp) {
        self.pending.sort_by_key(|(at, _)| *at);
        let due = self.pending.partition_point(|(at, _)| *at <= now);
        for (at, change) in self.pending.drain(..due).collect::<Vec<_>>() {
            self.apply(at, change);
        }
        self.age(now);
    }

    /// The targets of `service`'s group and their states.
    pub fn targets(&self, service: &str) -> Vec<TargetView> {
        self.groups
            .get(service)
            .into_iter()
            .flatten()
            .map(|(ip, (state, _))| TargetView {
                id: ip.clone(),
                state: *state,
            })
            .collect()
    }

    /// A target's state in `service`'s group (None: not registered).
    pub fn state(&self, service: &str, ip: &str) -> Option<TargetState> {
        self.groups.get(service)?.get(ip).map(|t| t.0)
    }

    /// The canary weight the listener rule applies (ingress mode).
    pub fn weight(&self) -> Option<i32> {
        self.weight
    }

    /// When the LB controller or the ALB next change something after `now`.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let pending = self.pending.iter().map(|(at, _)| *at);
        let aging =
            self.groups.values().flat_map(|g| g.values()).filter_map(
                |(state, since)| match state {
                    TargetState::Initial => Some(*since + self.health_check),
                    TargetState::Draining => Some(*since + self.deregistration),
                    _ => None,
                },
            );
        pending.chain(aging).filter(|t| *t > now).min()
    }

    /// The change made at `at`.
    fn apply(&mut self, at: Timestamp, change: Change) {
        match change {
            Change::Weight(w) => self.weight = Some(w),
            Change::Routes(routes) => self.routes = routes,
            Change::Targets(service, want) => {
                let group = self.groups.entry(service).or_default();
                for ip in &want {
                    match group.get(ip) {
                        Some((TargetState::Initial | TargetState::Healthy, _)) => {}
                        _ => {
                            group.insert(ip.clone(), (TargetState::Initial, at));
                        }
                    }
                }
                for (ip, target) in group.iter_mut() {
                    if !want.contains(ip) && target.0 != TargetState::Draining {
                        *target = (TargetState::Draining, at);
                    }
                }
            }
        }
    }

    /// Health checks passed and drains finished by `now`.
    fn age(&mut self, now: Timestamp) {
        let (health, drain) = (self.health_check, self.deregistration);
        for group in self.groups.values_mut() {
            group.retain(|_, (state, since)| {
                !(*state == TargetState::Draining && *since + drain <= now)
            });
            for (state, since) in group.values_mut() {
                if *state == TargetState::Initial && *since + health <= now {
                    *state = TargetState::Healthy;
                    *since += health;
                }
            }
        }
    }
}
