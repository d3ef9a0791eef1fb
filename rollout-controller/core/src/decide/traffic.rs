//! Traffic: the weights, on the Ingress annotation or (direct mode) the
//! ALB, and what AWS shows of them.

use super::*;

impl Decider<'_> {
    /// The canary weight the Ingress carries now (None without ALB routing
    /// or when the annotation is absent or not ours).
    pub(super) fn annotated_canary_weight(&self, plan: &Plan) -> Option<i32> {
        annotated_canary_weight(self.world, plan)
    }

    /// `(canary, stable)` weights AWS shows, when it is watched and readable.
    pub(super) fn aws_weights(&self) -> Option<(i32, i32)> {
        self.world.alb.as_ref()?.as_ref().ok()?.weights
    }

    pub(super) fn direct(plan: &Plan) -> bool {
        plan.alb.as_ref().is_some_and(|a| a.direct.is_some())
    }

    /// The canary weight in force: what we set (the annotation, or the ALB
    /// itself in direct mode).
    pub(super) fn canary_weight_now(&self, plan: &Plan) -> Option<i32> {
        if Self::direct(plan) {
            self.aws_weights().map(|(c, _)| c)
        } else {
            self.annotated_canary_weight(plan)
        }
    }

    /// Writes the weights where they are not yet; true once they are in
    /// force: carried by the Ingress and, when AWS is watched, shown by the
    /// ALB (or no traffic routing at all).
    pub(super) fn ensure_weights(&mut self, plan: &Plan, canary: i32) -> bool {
        let Some(alb) = &plan.alb else {
            return true;
        };
        let want = (canary, 100 - canary);
        if alb.direct.is_none() && self.annotated_canary_weight(plan) != Some(canary) {
            if !self.may_move(plan, canary) {
                return false;
            }
            // Every Ingress that does not carry them yet, in one decision:
            // they never aim at different weights.
            let world = self.world;
            let weights = ForwardWeights::of(plan, alb, canary);
            let behind = alb
                .ingresses
                .iter()
                .zip(ingress_weights(world, plan))
                .filter(|(_, w)| *w != Some(canary))
                .filter_map(|(name, _)| world.ingresses.iter().find(|i| &i.name == name));
            for ingress in behind {
                let annotations = alb::annotations(&ingress.annotations, &self.name, alb, &weights);
                self.actions.push(Action::SetIngressAction {
                    ingress: ingress.name.clone(),
                    annotations,
                    rules: None,
                });
            }
            return false;
        }
        let note = match &self.world.alb {
            None if alb.direct.is_some() => "direct mode needs the ELBv2 API".to_string(),
            None => return true,
            Some(Ok(o)) if o.weights == Some(want) => return true,
            Some(Ok(_)) if alb.direct.is_some() => {
                if !self.may_move(plan, canary) {
                    return false;
                }
                self.actions.push(Action::SetAlbWeights {
                    canary_weight: canary,
                });
                return false;
            }
            Some(Ok(o)) => match o.weights {
                Some((c, s)) => format!(
                    "waiting for the ALB to apply weights {}/{} (it shows {c}/{s})",
                    want.0, want.1
                ),
                None => "waiting for the ALB to forward to both target groups".to_string(),
            },
            Some(Err(e)) => format!("cannot verify the ALB weights: {e}"),
        };
        if let Some(status) = &mut self.status.alb {
            status.message = Some(note);
        }
        self.requeue_in(VERIFY_INTERVAL);
        false
    }

    /// The weight gate for a move to `canary`%: weight may move onto a
    /// target group only once it serves its pods. The first weights
    /// written (none in force) move nothing.
    fn may_move(&mut self, plan: &Plan, canary: i32) -> bool {
        // Each Ingress (ALB) on its own: any that would give the canary
        // more needs its group serving, any that would take from it the
        // stable's (with dynamicStableScale, grown back to its share).
        let now: Vec<i32> = if Self::direct(plan) {
            self.aws_weights().map(|(c, _)| c).into_iter().collect()
        } else {
            ingress_weights(self.world, plan).flatten().collect()
        };
        let grows = now.iter().any(|w| canary > *w);
        let shrinks = now.iter().any(|w| canary < *w);
        (!grows || self.weight_gate(plan, &plan.canary_service.clone()))
            && (!shrinks
                || (self.stable_can_take(plan, 100 - canary)
                    && self.weight_gate(plan, &plan.stable_service.clone())))
    }

    /// Records the weights in force, and what AWS shows, in the status.
    pub(super) fn observe_weights(&mut self, plan: &Plan) {
        let observed = self.canary_weight_now(plan);
        let header_routes = self.routes_carried(plan);
        let before = self.status.canary.weights.as_ref();
        let routes_before = &self.status.canary.header_routes;
        let since = match before {
            Some(b) if Some(b.canary.weight) == observed && *routes_before == header_routes => {
                b.since.clone()
            }
            _ => None,
        }
        .unwrap_or_else(|| self.world.now.to_string());
        let verified = self
            .world
            .alb
            .as_ref()
            .map(|_| observed.is_some_and(|w| self.aws_weights() == Some((w, 100 - w))));
        self.status.canary = CanaryStatus {
            weights: observed.map(|w| TrafficWeights {
                canary: WeightDestination {
                    weight: w,
                    service_name: Some(plan.canary_service.clone()),
                    pod_template_hash: self.service_hash(&plan.canary_service),
                },
                stable: WeightDestination {
                    weight: 100 - w,
                    service_name: Some(plan.stable_service.clone()),
                    pod_template_hash: self.service_hash(&plan.stable_service),
                },
                verified,
                since: Some(since),
            }),
            stable_ping_pong: self.status.canary.stable_ping_pong.take(),
            header_routes,
        };
        self.status.alb = self.world.alb.as_ref().map(|o| match o {
            Ok(o) => AlbStatus {
                load_balancer: o.load_balancer.clone(),
                stable_target_group: o.stable.clone(),
                canary_target_group: o.canary.clone(),
                rule: o.rule.clone(),
                message: None,
            },
            Err(e) => AlbStatus {
                message: Some(e.clone()),
                ..Default::default()
            },
        });
    }
}
