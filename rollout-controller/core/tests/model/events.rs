//! What each event does to the simulated cluster, and what the model notes
//! about it.

use super::*;

impl Model {
    pub(super) fn apply(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::Reconcile => return self.reconcile(None),
            Event::Racing(op) => return self.reconcile(Some(*op)),
            Event::Advance(secs) => self.sim.advance(SignedDuration::from_secs(*secs)),
            Event::Release => {
                self.releases += 1;
                let image = format!("backend:{}", self.releases);
                self.set_image(&image);
                self.revisions.push(self.sim.hash());
            }
            Event::BackToStable => {
                if let Some(stable) = self.status().stable_rs {
                    let image = self.images[&stable].clone();
                    self.set_image(&image);
                }
            }
            Event::EarlierRevision(i) => {
                let status = self.status();
                let current = self.sim.hash();
                let earlier: Vec<&String> = self
                    .revisions
                    .iter()
                    .rev()
                    .filter(|h| **h != current && Some(*h) != status.stable_rs.as_ref())
                    .collect();
                if let Some(hash) = earlier.get(i % earlier.len().max(1)) {
                    let image = self.images[*hash].clone();
                    self.set_image(&image);
                }
            }
            Event::Human(op) => self.human(*op),
            Event::ControllerRestart => return self.controller_restart(),
            Event::Kubelet(on) => self.sim.kubelet = *on,
            Event::Verdict(phase) => self.sim.verdict = Some(*phase),
        }
        Ok(())
    }

    pub(super) fn set_image(&mut self, image: &str) {
        let r = &mut self.sim.rollout;
        r.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        *r.metadata.generation.get_or_insert(0) += 1;
        self.images.insert(self.sim.hash(), image.to_string());
    }

    /// A human's `gantry rollout <op>`; refused ones change nothing.
    pub(super) fn human(&mut self, op: Op) {
        let status = self.status();
        if self.sim.operate(op).is_ok() {
            self.note(op, &status);
        }
    }

    /// What an accepted `op`, sent while the status read `status`, allows.
    pub(super) fn note(&mut self, op: Op, status: &RolloutStatus) {
        let index = status.current_step_index.unwrap_or(0);
        match op {
            Op::Promote { full: false } => {
                for c in &status.pause_conditions {
                    self.released.insert((index, c.reason.clone()));
                }
            }
            Op::Promote { full: true } => self.full = true,
            Op::Retry => self.retry = true,
            _ => {}
        }
    }

    /// The status through JSON, as a new controller reads it: the decision
    /// must not change.
    pub(super) fn controller_restart(&mut self) -> Result<(), String> {
        let json = serde_json::to_string(&self.sim.rollout).unwrap();
        let reread: Rollout = serde_json::from_str(&json).unwrap();
        let (a, b) = (
            decide(&self.sim.rollout, &self.sim.world),
            decide(&reread, &self.sim.world),
        );
        if a != b {
            return Err(format!(
                "a restarted controller decides otherwise:\n{a:#?}\n{b:#?}"
            ));
        }
        self.sim.rollout = reread;
        Ok(())
    }
}
