//! The ALB and the AWS Load Balancer Controller as the simulation runs
//! them, with AWS's timing: the LB controller mirrors each Service's ready
//! endpoints into its target group and the Ingress weights onto the
//! listener rule `lag` late; a registered target is `initial` until its
//! health checks pass (`health_check`), a deregistered one `draining` for
//! `deregistration`. The ALB exists whether or not the controller can see
//! it: `world.alb` shows it only when AWS is watched.
//!
//! After every change it checks what the ALB's data plane would do: weight
//! on a target group with no healthy target of a ready pod (503), and a pod
//! deleted while it is a healthy target of a group with weight or still
//! draining (502).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::validate::validate;
use crate::world::{EndpointView, PodView, TargetState, TargetView};

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
    /// The canary weight the listener rule applies (ingress mode).
    weight: Option<i32>,
    /// Changes the LB controller will have made by then, in order.
    pending: Vec<(Timestamp, Change)>,
}

#[derive(Debug, Clone)]
enum Change {
    Targets(String, BTreeSet<String>),
    Weight(i32),
}

/// A simulated pod's IP, from the counter in its name.
pub fn pod_ip(pod: &PodView) -> String {
    let n = pod_number(pod);
    format!("10.0.{}.{}", n / 250, n % 250 + 1)
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
    /// The pods' ReplicaSets and readiness, as the Services' EndpointSlices
    /// list them: a ReplicaSet's first `available` pods are ready.
    pub(super) fn sync_endpoints(&mut self) {
        let mut ready = BTreeMap::new();
        for rs in &self.world.replica_sets {
            let mut pods: Vec<&PodView> = self
                .world
                .pods
                .iter()
                .filter(|p| p.hash == rs.hash)
                .collect();
            pods.sort_by_key(|p| pod_number(p));
            for (i, p) in pods.iter().enumerate() {
                ready.insert(p.name.clone(), (p.hash.clone(), (i as i32) < rs.available));
            }
        }
        let w = &mut self.world;
        let pods = &w.pods;
        for s in [&mut w.stable_service, &mut w.canary_service]
            .into_iter()
            .flatten()
        {
            s.endpoints = pods
                .iter()
                .filter_map(|p| {
                    let (hash, is_ready) = ready.get(&p.name)?;
                    let selected = s.hash.as_ref().is_none_or(|h| h == hash);
                    selected.then(|| EndpointView {
                        ip: pod_ip(p),
                        pod: Some(p.name.clone()),
                        ready: *is_ready && !p.terminating,
                    })
                })
                .collect();
        }
    }

    /// What the LB controller and the ALB have done by now.
    pub(super) fn sync_lb(&mut self) {
        let Some(plan) = validate(&self.rollout.spec).ok() else {
            return;
        };
        let Some(alb) = &plan.alb else {
            return;
        };
        if !self.lb_controller {
            return;
        }
        let now = self.world.now;
        for service in [&plan.stable_service, &plan.canary_service] {
            let ready = self
                .service_view(service)
                .map(|s| {
                    s.endpoints
                        .iter()
                        .filter(|e| e.ready)
                        .map(|e| e.ip.clone())
                        .collect()
                })
                .unwrap_or_default();
            self.lb.see_endpoints(now, service, ready);
        }
        if alb.direct.is_none()
            && let Some(w) = self.canary_weight()
        {
            self.lb.see_weight(now, w);
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
            if ingress_mode && let Some(w) = weight {
                observed.weights = Some((w, 100 - w));
            }
        }
    }

    /// When the LB controller or the ALB next change something (after now).
    pub(super) fn next_lb_change(&self) -> Option<Timestamp> {
        self.lb_controller
            .then(|| self.lb.next_change(self.world.now))
            .flatten()
    }

    /// The ALB's data plane now: every group with weight has a healthy
    /// target that is a ready pod (from the first deploy's completion on:
    /// before, nothing served and nothing can be lost).
    pub(super) fn check_lb(&mut self) {
        let Some(plan) = validate(&self.rollout.spec).ok() else {
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
            if weight == 0 {
                continue;
            }
            let serving = self.lb.groups.get(service).is_some_and(|g| {
                g.iter()
                    .any(|(ip, (state, _))| *state == TargetState::Healthy && self.ready_pod(ip))
            });
            if !serving {
                self.violations.push(format!(
                    "{weight}% of traffic to {service}'s target group with no healthy target at {}",
                    self.world.now
                ));
            }
        }
    }

    /// A pod is about to be deleted: no request may still reach it.
    pub(super) fn check_pod_removal(&mut self, pod: &PodView) {
        let Some(plan) = validate(&self.rollout.spec).ok() else {
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
            let live = match state {
                Some(TargetState::Draining) => true,
                Some(TargetState::Healthy) => weight > 0,
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
            .filter(|p| p.hash == pod.hash && pod_number(p) < pod_number(pod))
            .count();
        (older as i32) < rs.available
    }

    fn service_view(&self, name: &str) -> Option<&crate::world::ServiceView> {
        [&self.world.stable_service, &self.world.canary_service]
            .into_iter()
            .flatten()
            .find(|s| s.name == name)
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

    /// The LB controller sees `service`'s ready pod IPs now: it mirrors
    /// them into the target group `lag` later.
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
