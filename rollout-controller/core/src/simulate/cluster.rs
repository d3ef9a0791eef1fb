//! The cluster acting on a decision: ReplicaSets, Services, the Ingress and
//! the ALB changed as the glue would change them, and pods run as the
//! ReplicaSet controller and the kubelet would run them.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::decide::Action;
use crate::world::{HealthGate, PodView, ReplicaSetView};

use super::Simulation;

impl Simulation {
    pub(super) fn apply(&mut self, action: &Action) {
        match action {
            Action::CreateReplicaSet {
                hash,
                replicas,
                pod_metadata,
                pre_stop,
            } => {
                if let Some(d) = pre_stop {
                    let d = SignedDuration::try_from(*d).expect("a short duration");
                    self.pre_stop.insert(hash.clone(), d);
                }
                self.created += 1;
                self.world.replica_sets.push(ReplicaSetView {
                    name: format!(
                        "{}-{hash}",
                        self.rollout.metadata.name.as_deref().unwrap_or("")
                    ),
                    hash: hash.clone(),
                    replicas: *replicas,
                    ready: 0,
                    available: 0,
                    scale_down_at: None,
                    created: Timestamp::from_second(self.created).ok(),
                    pod_metadata: pod_metadata.clone(),
                    stops_gracefully: pre_stop.is_some(),
                });
            }
            Action::ScaleReplicaSet { name, replicas } => {
                if *replicas == 0 {
                    self.check_scale_down(name);
                }
                let serving = self.available_pods();
                if let Some(rs) = self.world.replica_sets.iter_mut().find(|r| &r.name == name) {
                    rs.replicas = *replicas;
                    rs.available = rs.available.min(*replicas);
                    rs.ready = rs.ready.min(*replicas);
                }
                self.check_last_pods(name, serving);
            }
            Action::ScheduleScaleDown { name, at } => {
                if let Some(rs) = self.world.replica_sets.iter_mut().find(|r| &r.name == name) {
                    rs.scale_down_at = *at;
                }
            }
            Action::DeleteReplicaSet { name } => {
                self.world.replica_sets.retain(|r| &r.name != name)
            }
            Action::SetServiceSelector { service, hash, at } => {
                let w = &mut self.world;
                for s in [&mut w.stable_service, &mut w.canary_service]
                    .into_iter()
                    .flatten()
                {
                    if &s.name == service {
                        s.hash = Some(hash.clone());
                        s.selected_at = Some(*at);
                    }
                }
            }
            Action::SetPodMetadata { name, to, .. } => {
                if let Some(rs) = self.world.replica_sets.iter_mut().find(|r| &r.name == name) {
                    rs.pod_metadata = to.clone();
                }
            }
            Action::ScaleDeployment { replicas, .. } => {
                if let Some(w) = self.world.workload.as_mut() {
                    w.replicas = *replicas;
                }
            }
            Action::SetAlbWeights { canary_weight } => {
                if let Some(Ok(observed)) = self.world.alb.as_mut() {
                    observed.weights = Some((*canary_weight, 100 - canary_weight));
                }
            }
            Action::EvictPod { name } => {
                let Some(i) = self.world.pods.iter().position(|p| &p.name == name) else {
                    return;
                };
                let pod = self.world.pods.remove(i);
                if let Some(rs) = self
                    .world
                    .replica_sets
                    .iter_mut()
                    .find(|r| r.hash == pod.hash)
                {
                    rs.available = (rs.available - 1).max(0);
                    rs.ready = (rs.ready - 1).max(0);
                }
            }
            Action::SetIngressAction {
                ingress,
                annotations,
                rules,
            } => {
                if let Some(i) = self.world.ingresses.iter_mut().find(|i| &i.name == ingress) {
                    crate::alb::routes::apply(i, annotations, rules.as_ref());
                }
            }
        }
    }

    /// What the ReplicaSet controller and the kubelet do: as many pods as
    /// each ReplicaSet asks for (new ones created now), all available when
    /// the kubelet runs them.
    pub(super) fn run_pods(&mut self) {
        let now = self.world.now;
        let mut removed = Vec::new();
        for rs in &mut self.world.replica_sets {
            // Terminating pods are no longer the ReplicaSet's replicas.
            let mine = |p: &PodView| p.hash == rs.hash && !p.terminating;
            let have = self.world.pods.iter().filter(|p| mine(p)).count() as i32;
            for _ in have..rs.replicas {
                self.created += 1;
                let name = format!("{}-{}", rs.name, self.created);
                if self.readiness_gates {
                    let selecting = [&self.world.stable_service, &self.world.canary_service]
                        .into_iter()
                        .flatten()
                        .filter(|s| s.hash.as_ref().is_none_or(|h| *h == rs.hash))
                        .map(|s| {
                            let unset = HealthGate {
                                healthy: false,
                                since: None,
                            };
                            (s.name.clone(), unset)
                        });
                    self.gates.insert(name.clone(), selecting.collect());
                }
                self.world.pods.push(PodView {
                    name,
                    hash: rs.hash.clone(),
                    created: now,
                    terminating: false,
                });
            }
            let mut extra = (have - rs.replicas).max(0);
            let pre_stop = self.pre_stop.get(&rs.hash).copied();
            self.world.pods.retain_mut(|p| {
                let drop = mine(p) && extra > 0;
                extra -= i32::from(drop);
                match (drop, pre_stop) {
                    // Its preStop hook keeps it serving a while.
                    (true, Some(sleep)) => {
                        p.terminating = true;
                        self.stopping.insert(p.name.clone(), now + sleep);
                        true
                    }
                    (true, None) => {
                        removed.push(p.clone());
                        false
                    }
                    (false, _) => true,
                }
            });
            if self.kubelet {
                rs.available = rs.replicas;
                rs.ready = rs.replicas;
            }
        }
        let hashes: Vec<String> = self
            .world
            .replica_sets
            .iter()
            .map(|r| r.hash.clone())
            .collect();
        self.world.pods.retain(|p| {
            // A terminating pod exits when its preStop sleep is over.
            let keep = hashes.contains(&p.hash) || p.terminating;
            if !keep {
                removed.push(p.clone());
            }
            keep
        });
        for pod in &removed {
            self.check_pod_removal(pod, false);
            self.gates.remove(&pod.name);
            self.stopping.remove(&pod.name);
        }
    }

    /// Terminating pods whose preStop sleep is over exit (finishing the
    /// requests they were given, within their grace period).
    pub(super) fn stop_pods(&mut self) {
        let now = self.world.now;
        let due: Vec<String> = self
            .stopping
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.stopping.remove(&name);
            let Some(i) = self.world.pods.iter().position(|p| p.name == name) else {
                continue;
            };
            let pod = self.world.pods.remove(i);
            self.check_pod_removal(&pod, true);
            self.gates.remove(&pod.name);
        }
    }

    /// When the next terminating pod exits.
    pub(super) fn next_pod_exit(&self) -> Option<Timestamp> {
        self.stopping.values().copied().min()
    }
}
