//! Traffic safety at the ALB: weight moves onto a target group only once
//! the pods its Service selects are healthy in it, a Service is re-pointed
//! only while its target group carries no weight, and a ReplicaSet is
//! scaled down only once its pods have left every target group.
//!
//! With the ELBv2 API the controller sees target health (DescribeTargetHealth)
//! and asks it. Without, it sees what the cluster shows: the Service's
//! EndpointSlices, and it waits the time the ALB takes (`Gates::settle`
//! after pods are ready, `Gates::drain` after they left) — unless every
//! pod carries the LB controller's readiness gate for the Service's
//! target group: a Ready pod is then a healthy target.

use std::net::IpAddr;

use crate::types::{GateKind, TrafficGate};
use crate::world::{EndpointView, HealthGate, TargetState, TargetView};

use super::*;
use crate::validate::Alb;

/// How often to look again while a gate waits for the ALB.
const GATE_INTERVAL: Duration = Duration::from_secs(5);
/// The Healthy condition's reason when a weight gate gave up.
pub const GATE_TIMEOUT_REASON: &str = "TrafficGateTimedOut";

/// Whether a target group serves the pods its Service selects.
enum Serving {
    /// ELBv2 shows every one of them healthy.
    Healthy,
    /// Ready behind the Service; the ALB's view is not available, and not
    /// every pod carries the group's readiness gate.
    Ready,
    No(String),
}

impl Decider<'_> {
    /// The weight on `service`'s target group: the most any Ingress carries
    /// (they may disagree while a write is lost or under way) or, when AWS
    /// is watched, the ALB shows: all of it must be gone.
    pub(super) fn group_weight(&self, plan: &Plan, service: &str) -> i32 {
        let canary = service == plan.canary_service;
        let of = |c: i32| if canary { c } else { 100 - c };
        let written = ingress_weights(self.world, plan).flatten().map(of).max();
        let shown = self.aws_weights().map(|(c, _)| of(c));
        written.max(shown).unwrap_or(0)
    }

    /// Whether requests may reach `service`'s target group: it has weight,
    /// or (the canary's) a header route sends some there.
    pub(super) fn traffic_on(&self, plan: &Plan, service: &str) -> bool {
        self.group_weight(plan, service) > 0
            || (service == plan.canary_service && self.routes_present(plan))
    }

    /// Takes the traffic off `service`'s target group: its weight first
    /// (to the other group), then (the canary's) header routes.
    pub(super) fn clear_traffic(&mut self, plan: &Plan, service: &str) {
        if self.group_weight(plan, service) > 0 {
            let canary = if service == plan.stable_service {
                100
            } else {
                0
            };
            self.ensure_weights(plan, canary);
        } else {
            self.ensure_routes(plan, &[]);
        }
    }

    /// Points `service` at `hash` once its target group carries no weight,
    /// moving all weight onto the other group first; true once it selects
    /// `hash`. A Service not yet pointed at any ReplicaSet selects every
    /// pod of the app, the new ones among them: narrowing it is safe.
    pub(super) fn repoint(&mut self, plan: &Plan, service: &str, hash: &str) -> bool {
        if self.on(service, hash) {
            return true;
        }
        let current = self.service_hash(service);
        if plan.alb.is_none() || current.is_none() {
            self.point(service, hash);
            return false;
        }
        if self.traffic_on(plan, service) {
            self.clear_traffic(plan, service);
            return false;
        }
        if self.weight_settled(plan, service) {
            self.point(service, hash);
        }
        false
    }

    /// Whether the LB controller is done with `service`'s last selector
    /// change, so that another one cannot be mixed up with it: with the
    /// ELBv2 API, its target group holds exactly the Service's pods;
    /// without, the settle delay passed since the weights and the
    /// Service's selector last changed (when both are known; else since
    /// this wait began).
    fn weight_settled(&mut self, plan: &Plan, service: &str) -> bool {
        let Some(alb) = &plan.alb else {
            return true;
        };
        let hash = self.service_hash(service).unwrap_or_default();
        if let Some(waiting) = self.gates_unpassed(plan, service) {
            let message = format!(
                "{waiting} pod(s) of {hash} wait for their readiness gate for {service}'s target group; re-pointing {service} now would leave them unready for good"
            );
            let since = self.waiting(GateKind::WeightsApplied, service, &hash, message.clone());
            if self.elapsed(since, alb.gates.timeout) {
                self.gate_timed_out(&message, alb.gates.timeout);
            }
            return false;
        }
        // Sticky clients keep going to the group they were sent to, weight
        // or not: its pods stay until the stickiness has run out since its
        // weight went (an emptied or re-registering group would answer
        // them 503).
        if let Some(sticky) = alb.stickiness {
            let since = self.weights_since().or_else(|| {
                let gate = self.gate_before(GateKind::WeightsApplied, service, &hash)?;
                gate.since.parse().ok()
            });
            if !self.elapsed(since.unwrap_or(self.world.now), sticky) {
                let message = format!(
                    "waiting {} (stickinessConfig) for sticky clients to leave {service}'s target group before its selector changes",
                    crate::display::human(sticky)
                );
                self.waiting(GateKind::WeightsApplied, service, &hash, message);
                return false;
            }
        }
        if self.world.alb.is_some() {
            let Some(behind) = self.unsynced(plan, service) else {
                return true;
            };
            let message = format!(
                "{service}'s target group to catch up ({behind}) before its selector changes"
            );
            self.waiting(GateKind::WeightsApplied, service, &hash, message);
            return false;
        }
        let settle = self.settle_time(alb);
        let message = format!(
            "waiting {} for the ALB to take the weight off {service}'s target group before its selector changes",
            crate::display::human(settle)
        );
        let weights_since = self.weights_since();
        let selected_at = self.service(service).and_then(|s| s.selected_at);
        let since = weights_since
            .zip(selected_at)
            .map(|(w, s): (Timestamp, Timestamp)| w.max(s))
            .or_else(|| {
                let gate = self.gate_before(GateKind::WeightsApplied, service, &hash)?;
                gate.since.parse().ok()
            })
            .unwrap_or(self.world.now);
        if self.elapsed(since, settle) {
            return true;
        }
        self.waiting(GateKind::WeightsApplied, service, &hash, message);
        false
    }

    /// Since when the weights in force have been (`status.canary.weights.since`).
    pub(super) fn weights_since(&self) -> Option<Timestamp> {
        let weights = self.status.canary.weights.as_ref()?;
        weights.since.as_deref()?.parse().ok()
    }

    /// How many pods behind `service` still wait for its readiness gate,
    /// when the other Service keeps them: the LB controller sets a gate
    /// only while the pod is behind the gate's Service, so one left
    /// unpassed keeps its pod unready for good.
    fn gates_unpassed(&self, plan: &Plan, service: &str) -> Option<usize> {
        let s = self.service(service)?;
        let other = match service == plan.stable_service {
            true => &plan.canary_service,
            false => &plan.stable_service,
        };
        if s.hash.is_none() || self.service_hash(other) != s.hash {
            return None;
        }
        let unpassed = s
            .endpoints
            .iter()
            .filter(|e| e.health_gate.is_some_and(|g| !g.healthy));
        Some(unpassed.count()).filter(|n| *n > 0)
    }

    /// The weight gate: true once `service`'s target group serves the pods
    /// it selects. Waiting is recorded in the status; a wait longer than
    /// the timeout aborts a canary as a failed analysis does.
    pub(super) fn weight_gate(&mut self, plan: &Plan, service: &str) -> bool {
        let Some(alb) = &plan.alb else {
            return true;
        };
        let hash = self.service_hash(service).unwrap_or_default();
        let message = match self.serving(plan, service) {
            Serving::Healthy => return true,
            // A group already carrying traffic has healthy targets (its
            // Service is never re-pointed while it does): more weight is
            // a question of capacity, which readiness answers.
            Serving::Ready if self.traffic_on(plan, service) => return true,
            Serving::Ready => {
                let settle = self.settle_time(alb);
                let message = format!(
                    "pods ready behind {service}; waiting {} for the ALB's health checks (without the ELBv2 API, target health shows only in readiness gates, which these pods do not carry for its target group)",
                    crate::display::human(settle)
                );
                let ready_since = self
                    .gate_before(GateKind::TargetsHealthy, service, &hash)
                    .and_then(|g| g.ready_since.clone())
                    .unwrap_or_else(|| self.world.now.to_string());
                let ready_at = ready_since.parse().unwrap_or(self.world.now);
                if self.elapsed(ready_at, settle) {
                    return true;
                }
                self.waiting(GateKind::TargetsHealthy, service, &hash, message);
                if let Some(g) = self.status.traffic_gates.last_mut() {
                    g.ready_since = Some(ready_since);
                }
                return false;
            }
            Serving::No(message) => message,
        };
        let since = self.waiting(GateKind::TargetsHealthy, service, &hash, message.clone());
        if self.elapsed(since, alb.gates.timeout) {
            self.gate_timed_out(&message, alb.gates.timeout);
        }
        false
    }

    /// Whether `service`'s target group serves the pods the Service selects.
    fn serving(&self, plan: &Plan, service: &str) -> Serving {
        let Some(s) = self.service(service) else {
            return Serving::No(format!("Service {service} not found"));
        };
        let Some(rs) = s.hash.as_deref().and_then(|h| self.rs(h)) else {
            return Serving::No(format!("{service} selects no ReplicaSet of this Rollout"));
        };
        let ready: Vec<&EndpointView> = s.endpoints.iter().filter(|e| e.ready).collect();
        let stale = ready.iter().filter(|e| !e.of(&rs.name)).count();
        if stale > 0 {
            return Serving::No(format!(
                "{service}'s endpoints still list {stale} pod(s) of another ReplicaSet"
            ));
        }
        let pods = ready.len() as i32;
        if pods == 0 || pods < rs.ready {
            return Serving::No(format!(
                "{pods} of {} pods of {} ready behind {service}",
                rs.ready.max(1),
                rs.name
            ));
        }
        let targets = match &self.world.alb {
            None if ready.iter().all(|e| gate_passed(e, s.selected_at)) => return Serving::Healthy,
            None => return Serving::Ready,
            Some(Err(e)) => return Serving::No(format!("cannot read target health: {e}")),
            Some(Ok(o)) if service == plan.stable_service => o.stable_targets.as_ref(),
            Some(Ok(o)) => o.canary_targets.as_ref(),
        };
        let Some(targets) = targets else {
            return Serving::No(format!("{service}'s target group is not on the ALB yet"));
        };
        let healthy = |t: &TargetView| t.state == TargetState::Healthy;
        if !pod_targets(targets) {
            // Instance targets: nodes forward to the ready endpoints.
            return match targets.iter().any(healthy) {
                true => Serving::Healthy,
                false => Serving::No(format!("no healthy instance in {service}'s target group")),
            };
        }
        let up = ready
            .iter()
            .filter(|e| targets.iter().any(|t| t.id == e.ip && healthy(t)))
            .count();
        if up < ready.len() {
            return Serving::No(format!(
                "{up} of {pods} pods of {} healthy in {service}'s target group",
                rs.name
            ));
        }
        Serving::Healthy
    }

    /// What `service`'s target group still lacks to hold exactly the pods
    /// the Service lists (registered, not draining), if anything.
    fn unsynced(&self, plan: &Plan, service: &str) -> Option<String> {
        let s = self.service(service)?;
        let targets = match &self.world.alb {
            Some(Ok(o)) if service == plan.stable_service => o.stable_targets.as_ref(),
            Some(Ok(o)) => o.canary_targets.as_ref(),
            Some(Err(e)) => return Some(format!("cannot read target health: {e}")),
            None => return None,
        };
        let targets = targets.filter(|t| pod_targets(t))?;
        let registered = |ip: &str| {
            targets
                .iter()
                .any(|t| t.id == ip && t.state != TargetState::Draining)
        };
        let missing = s
            .endpoints
            .iter()
            .filter(|e| e.ready && !registered(&e.ip))
            .count();
        let extra = targets
            .iter()
            .filter(|t| t.state != TargetState::Draining)
            .filter(|t| !s.endpoints.iter().any(|e| e.ip == t.id))
            .count();
        (missing + extra > 0).then(|| format!("{missing} to register, {extra} to deregister"))
    }

    /// Whether `rs`'s pods have left every target group of the Rollout, so
    /// that scaling it down deletes no pod that may still get a request.
    /// Without per-pod target health the drain time is in its scale-down
    /// deadline (`drain_time`) and only the EndpointSlices are checked.
    pub(super) fn drained(&mut self, plan: &Plan, rs: &ReplicaSetView) -> bool {
        let Some(why) = self.undrained(plan, rs) else {
            return true;
        };
        let message = format!("{} waits to scale down: {why}", rs.name);
        self.waiting(
            GateKind::TargetsDrained,
            &rs.name.clone(),
            &rs.hash,
            message,
        );
        false
    }

    fn undrained(&self, plan: &Plan, rs: &ReplicaSetView) -> Option<String> {
        plan.alb.as_ref()?;
        for service in [&plan.stable_service, &plan.canary_service] {
            let Some(s) = self.service(service) else {
                continue;
            };
            let listed = s.endpoints.iter().filter(|e| e.of(&rs.name)).count();
            if listed > 0 {
                return Some(format!("{listed} pod(s) still behind {service}"));
            }
            let targets = match &self.world.alb {
                None => continue,
                Some(Err(e)) => return Some(format!("cannot read target health: {e}")),
                Some(Ok(o)) if *service == plan.stable_service => o.stable_targets.as_ref(),
                Some(Ok(o)) => o.canary_targets.as_ref(),
            };
            let Some(targets) = targets.filter(|t| pod_targets(t)) else {
                continue;
            };
            // Any target that is not one of the Service's pods now may be
            // one of `rs`'s (its IPs are not known once it left the Service).
            let stale = targets
                .iter()
                .filter(|t| {
                    t.state == TargetState::Draining || !s.endpoints.iter().any(|e| e.ip == t.id)
                })
                .count();
            if stale > 0 {
                return Some(format!(
                    "{stale} target(s) still registered or draining in {service}'s target group"
                ));
            }
        }
        None
    }

    /// How long after leaving the Services a ReplicaSet's pods may still
    /// get requests, when the ALB cannot be asked per pod: the LB
    /// controller's reaction (the settle delay) and the deregistration delay.
    pub(super) fn drain_time(&self, plan: &Plan) -> Duration {
        let Some(alb) = &plan.alb else {
            return Duration::ZERO;
        };
        let per_pod = match &self.world.alb {
            Some(Ok(o)) => [&o.stable_targets, &o.canary_targets]
                .iter()
                .all(|t| t.as_ref().is_some_and(|t| pod_targets(t))),
            _ => false,
        };
        if per_pod {
            return Duration::ZERO;
        }
        self.settle_time(alb) + self.longest(|a| alb.gates.drain(alb, a))
    }

    /// Without the ELBv2 API: the settle time of the slowest ALB.
    pub(super) fn settle_time(&self, alb: &Alb) -> Duration {
        self.longest(|a| alb.gates.settle(alb, a))
    }

    /// The longest of a timing read from each Ingress's annotations (their
    /// defaults when none is observed).
    fn longest(&self, of: impl Fn(&BTreeMap<String, String>) -> Duration) -> Duration {
        let none = BTreeMap::new();
        let each = self.world.ingresses.iter().map(|i| of(&i.annotations));
        each.max().unwrap_or_else(|| of(&none))
    }

    fn gate_before(&self, kind: GateKind, target: &str, hash: &str) -> Option<&TrafficGate> {
        self.gates_before
            .iter()
            .find(|g| g.kind == kind && g.target == target && g.pod_template_hash == hash)
    }

    /// Records a wait in the status (keeping when it started) and looks
    /// again soon; returns when it started.
    pub(super) fn waiting(
        &mut self,
        kind: GateKind,
        target: &str,
        hash: &str,
        message: String,
    ) -> Timestamp {
        let since = self
            .gate_before(kind, target, hash)
            .and_then(|g| g.since.parse().ok())
            .unwrap_or(self.world.now);
        // What traffic waits for is what the ALB status says.
        if let Some(status) = self
            .status
            .alb
            .as_mut()
            .filter(|_| kind != GateKind::TargetsDrained)
        {
            status.message = Some(message.clone());
        }
        self.status.traffic_gates.retain(|g| g.target != target);
        self.status.traffic_gates.push(TrafficGate {
            kind,
            target: target.to_string(),
            pod_template_hash: hash.to_string(),
            since: since.to_string(),
            ready_since: None,
            message,
        });
        self.requeue_in(GATE_INTERVAL);
        since
    }

    /// Whether `wait` has passed since `since` (else look again then).
    pub(super) fn elapsed(&mut self, since: Timestamp, wait: Duration) -> bool {
        let due = since + SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
        if self.world.now >= due {
            return true;
        }
        self.requeue_in(due.duration_since(self.world.now).unsigned_abs());
        false
    }

    /// A weight gate that waited too long: a canary is aborted, as by a
    /// failed analysis; anything else waits on (the progress deadline
    /// reports it).
    pub(super) fn gate_timed_out(&mut self, message: &str, timeout: Duration) {
        let canary = self
            .status
            .stable_rs
            .as_ref()
            .is_some_and(|s| Some(s) != self.status.current_pod_hash.as_ref());
        if !canary || self.status.abort {
            return;
        }
        let why = format!(
            "traffic gate timed out after {}: {message}",
            crate::display::human(timeout)
        );
        self.status.abort = true;
        self.condition("Healthy", false, GATE_TIMEOUT_REASON, &why);
        self.events.push((GATE_TIMEOUT_REASON.into(), why));
    }

    /// The message of the weight gate being waited at, if any.
    pub(super) fn weight_gate_message(&self) -> Option<&str> {
        self.status
            .traffic_gates
            .iter()
            .find(|g| g.kind != GateKind::TargetsDrained)
            .map(|g| g.message.as_str())
    }
}

/// Whether the pod's readiness gate for the Service's target group says
/// it is a healthy target there now: its condition turned true after the
/// Service was last pointed at these pods. One that turned true earlier
/// may be from a time the pod was behind the Service before (the LB
/// controller leaves it as it was once the pod leaves): not evidence.
fn gate_passed(e: &EndpointView, selected_at: Option<Timestamp>) -> bool {
    match (e.health_gate, selected_at) {
        (
            Some(HealthGate {
                healthy: true,
                since: Some(since),
            }),
            Some(at),
        ) => since > at,
        _ => false,
    }
}

/// Whether targets are pod IPs (`target-type: ip`), so each pod's health
/// is visible; an empty group counts (it holds no pod yet).
fn pod_targets(targets: &[TargetView]) -> bool {
    targets.iter().all(|t| t.id.parse::<IpAddr>().is_ok())
}
