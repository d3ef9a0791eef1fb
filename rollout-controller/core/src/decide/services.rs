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
        for name in plan.alb.iter().flat_map(|a| &a.ingresses) {
            match self.world.ingresses.iter().find(|i| &i.name == name) {
                None => return Err(format!("ingress {name:?} not found")),
                Some(i) if !i.routes_to(plan.alb.as_ref().map_or("", |a| &a.root_service)) => {
                    let root = plan.alb.as_ref().map_or("", |a| a.root_service.as_str());
                    return Err(format!(
                        "ingress {name:?} has no rule backed by service {root:?} with port name \"use-annotation\""
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
