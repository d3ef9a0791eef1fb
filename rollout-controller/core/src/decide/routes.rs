//! Header routes (`setHeaderRoute`): requests whose headers match go to
//! the canary's target group whatever the weights. So a route is traffic
//! on that group: it is added only once the group serves, and it must be
//! gone — from every Ingress and, when AWS is watched, every ALB — before
//! the canary Service is re-pointed or the canary's pods leave. Every step
//! holds the routes the steps so far set; promotion and abort remove them
//! (as Argo).

use crate::alb::routes::{self, Route, RouteTarget, route_edit};
use crate::world::canonical;

use super::*;

impl Decider<'_> {
    /// Makes every Ingress carry exactly `want` of the managed routes; true
    /// once they all do and, when AWS is watched, every ALB shows exactly
    /// those rules to the canary's group. Adding a route waits for the
    /// canary's group to serve the pods the canary Service selects.
    pub(super) fn ensure_routes(&mut self, plan: &Plan, want: &[Route]) -> bool {
        let Some(alb) = plan.alb.as_ref().filter(|a| !a.managed_routes.is_empty()) else {
            return true;
        };
        let target = RouteTarget::of(plan, alb);
        let world = self.world;
        let edits: Vec<_> = alb
            .ingresses
            .iter()
            .filter_map(|name| world.ingresses.iter().find(|i| &i.name == name))
            .filter_map(|i| Some((i, route_edit(i, &self.name, alb, &target, want)?)))
            .collect();
        if !edits.is_empty() {
            let adds = edits.iter().any(|(i, _)| {
                let carried = routes::routes_carried(i, alb);
                want.iter()
                    .any(|(name, _)| !carried.iter().any(|c| c == name))
            });
            if adds && !self.weight_gate(plan, &plan.canary_service.clone()) {
                return false;
            }
            for (ingress, edit) in edits {
                self.actions.push(Action::SetIngressAction {
                    ingress: ingress.name.clone(),
                    annotations: edit.annotations,
                    rules: edit.rules,
                });
            }
            return false;
        }
        let note = match &self.world.alb {
            None => return true,
            Some(Ok(o)) => {
                let want: Vec<_> = want.iter().map(|(_, c)| canonical(c)).collect();
                let shown = want.iter().all(|c| o.header_routes.contains(c));
                let stray = o.header_routes_anywhere.iter().any(|r| !want.contains(r));
                if shown && !stray {
                    return true;
                }
                format!(
                    "waiting for the ALB to apply the header routes ({} of {} shown, {} to remove)",
                    want.iter().filter(|c| o.header_routes.contains(c)).count(),
                    want.len(),
                    o.header_routes_anywhere
                        .iter()
                        .filter(|r| !want.contains(r))
                        .count()
                )
            }
            Some(Err(e)) => format!("cannot verify the header routes: {e}"),
        };
        if let Some(status) = &mut self.status.alb {
            status.message = Some(note);
        }
        self.requeue_in(VERIFY_INTERVAL);
        false
    }

    /// Whether a header route may send requests to the canary's group: an
    /// Ingress carries one (in part or whole), or an ALB still shows one.
    pub(super) fn routes_present(&self, plan: &Plan) -> bool {
        let Some(alb) = plan.alb.as_ref().filter(|a| !a.managed_routes.is_empty()) else {
            return false;
        };
        let on_ingress = self
            .world
            .ingresses
            .iter()
            .filter(|i| alb.ingresses.contains(&i.name))
            .any(|i| routes::carries_routes(i, alb));
        let on_alb = matches!(&self.world.alb, Some(Ok(o)) if !o.header_routes_anywhere.is_empty());
        on_ingress || on_alb
    }

    /// The managed routes every Ingress carries in whole, in order.
    pub(super) fn routes_carried(&self, plan: &Plan) -> Vec<String> {
        let Some(alb) = plan.alb.as_ref().filter(|a| !a.managed_routes.is_empty()) else {
            return Vec::new();
        };
        let mut views = alb
            .ingresses
            .iter()
            .map(|name| self.world.ingresses.iter().find(|i| &i.name == name));
        let Some(Some(first)) = views.next() else {
            return Vec::new();
        };
        let mut carried = routes::routes_carried(first, alb);
        for view in views {
            let other = view
                .map(|i| routes::routes_carried(i, alb))
                .unwrap_or_default();
            carried.retain(|r| other.contains(r));
        }
        carried
    }
}
