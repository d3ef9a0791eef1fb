//! The stable and canary Services: that they exist and route through the
//! ALB as the spec says, and which ReplicaSet each selects.

use super::*;

impl Decider<'_> {
    pub(super) fn check_references(&self, plan: &Plan) -> Result<(), String> {
        for (field, name) in [
            ("canaryService", &plan.canary_service),
            ("stableService", &plan.stable_service),
        ] {
            if !name.is_empty() && self.service(name).is_none() {
                return Err(format!("{field} {name:?} not found"));
            }
        }
        if let Some(alb) = plan.alb.as_ref().filter(|a| a.direct.is_none()) {
            match &self.world.ingress {
                None => return Err(format!("ingress {:?} not found", alb.ingress)),
                Some(i) if !i.routes_root_service => {
                    return Err(format!(
                        "ingress {:?} has no rule backed by service {:?} with port name \"use-annotation\"",
                        alb.ingress, alb.root_service
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub(super) fn service(&self, name: &str) -> Option<&ServiceView> {
        [&self.world.stable_service, &self.world.canary_service]
            .into_iter()
            .flatten()
            .find(|s| s.name == name)
    }

    pub(super) fn service_hash(&self, name: &str) -> Option<String> {
        self.service(name).and_then(|s| s.hash.clone())
    }

    pub(super) fn services_on(&self, plan: &Plan, stable: &str, canary: &str) -> bool {
        self.on(&plan.stable_service, stable) && self.on(&plan.canary_service, canary)
    }

    /// Whether `service` selects `hash`; a Service the Rollout does not
    /// name (empty) is where it should be, whatever the revision.
    pub(super) fn on(&self, service: &str, hash: &str) -> bool {
        service.is_empty() || self.service_hash(service).as_deref() == Some(hash)
    }

    pub(super) fn point(&mut self, service: &str, hash: &str) {
        if !self.on(service, hash) {
            self.actions.push(Action::SetServiceSelector {
                service: service.to_string(),
                hash: hash.to_string(),
                at: self.world.now,
            });
        }
    }

    /// Whether this decision points `service` at `hash`.
    pub(super) fn pointing(&self, service: &str, hash: &str) -> bool {
        self.actions.iter().any(|a| {
            matches!(a, Action::SetServiceSelector { service: s, hash: h, .. } if s == service && h == hash)
        })
    }
}
