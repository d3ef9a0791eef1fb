//! Header routes (`managedRoutes` + `setHeaderRoute`) on an Ingress, as the
//! AWS Load Balancer Controller reads them: per route, a
//! `conditions.<route>` annotation (http-header conditions), an
//! `actions.<route>` annotation (forward to the canary Service) and a path
//! backed by `<route>` on port `use-annotation`, placed before the root
//! Service's path so that its listener rule is evaluated first.
//!
//! Unlike Argo Rollouts, which puts a `/*` path at the front of every rule
//! of the Ingress, each route copies the paths of the root Service: a
//! request the Ingress sends elsewhere (another path, another host) is not
//! pulled to the canary by its headers.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, IngressRule};
use serde::{Deserialize, Serialize};

use super::{Action, ForwardConfig, MANAGED_ACTIONS, Stickiness, TargetGroup};
use crate::validate::{Alb, Plan};
use crate::world::IngressView;

/// The port name the LB controller reads as "the action annotation decides".
pub const USE_ANNOTATION: &str = "use-annotation";

/// An ALB listener-rule condition, in the LB controller's annotation shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeaderCondition {
    pub field: String,
    pub http_header_config: HttpHeaderConfig,
}

/// Matches when the header has one of `values` (compared case-insensitively
/// by the ALB, `*` and `?` as wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpHeaderConfig {
    pub http_header_name: String,
    pub values: Vec<String>,
}

impl HeaderCondition {
    pub fn http_header(name: &str, values: Vec<String>) -> HeaderCondition {
        HeaderCondition {
            field: "http-header".into(),
            http_header_config: HttpHeaderConfig {
                http_header_name: name.to_string(),
                values,
            },
        }
    }
}

/// A header route to carry: its name and conditions.
pub type Route<'a> = (&'a str, &'a [HeaderCondition]);

/// Where the routes send matching requests: all to the canary Service.
pub struct RouteTarget<'a> {
    pub canary_service: &'a str,
    pub port: i32,
    pub stickiness: Option<u64>,
}

/// The changes that make `ingress` carry exactly `want` of the Rollout's
/// managed routes: annotations to set (None: remove), and the rules when
/// their paths change. None when it carries them already.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEdit {
    pub annotations: BTreeMap<String, Option<String>>,
    pub rules: Option<Vec<IngressRule>>,
}

impl<'a> RouteTarget<'a> {
    /// The plan's canary Service, on `alb`'s port and with its stickiness.
    pub fn of(plan: &'a Plan, alb: &Alb) -> RouteTarget<'a> {
        RouteTarget {
            canary_service: &plan.canary_service,
            port: alb.service_port,
            stickiness: alb.stickiness.map(|d| d.as_secs()),
        }
    }
}

impl RouteEdit {
    /// `ingress` as this edit leaves it.
    pub fn apply(&self, ingress: &mut IngressView) {
        apply(ingress, &self.annotations, self.rules.as_ref());
    }
}

/// Sets or (None) removes `annotations` on `ingress`, and replaces its
/// rules when given: what a merge patch of them does.
pub fn apply(
    ingress: &mut IngressView,
    annotations: &BTreeMap<String, Option<String>>,
    rules: Option<&Vec<IngressRule>>,
) {
    for (key, value) in annotations {
        match value {
            Some(v) => ingress.annotations.insert(key.clone(), v.clone()),
            None => ingress.annotations.remove(key),
        };
    }
    if let Some(rules) = rules {
        ingress.rules = rules.clone();
    }
}

impl Alb {
    pub fn conditions_key(&self, route: &str) -> String {
        format!("{}/conditions.{route}", self.annotation_prefix)
    }

    pub fn route_action_key(&self, route: &str) -> String {
        format!("{}/actions.{route}", self.annotation_prefix)
    }
}

fn route_action(target: &RouteTarget) -> String {
    let action = Action {
        type_: "forward".into(),
        forward_config: ForwardConfig {
            target_groups: vec![TargetGroup {
                service_name: target.canary_service.to_string(),
                service_port: target.port.to_string(),
                weight: 100,
            }],
            target_group_stickiness_config: target.stickiness.map(|seconds| Stickiness {
                enabled: true,
                duration_seconds: seconds,
            }),
        },
    };
    serde_json::to_string(&action).expect("serialisable")
}

/// The edit that makes `ingress` carry `want` (in `alb.managed_routes`
/// order), or None when it does.
pub fn route_edit(
    ingress: &IngressView,
    rollout: &str,
    alb: &Alb,
    target: &RouteTarget,
    want: &[Route],
) -> Option<RouteEdit> {
    let existing = &ingress.annotations;
    let mut annotations = BTreeMap::new();
    let before = Marker::read(existing);
    let mut marker = Marker::read(existing);
    for route in &alb.managed_routes {
        let keys = [alb.conditions_key(route), alb.route_action_key(route)];
        let wanted = want.iter().find(|(name, _)| name == route);
        let values = wanted.map(|(_, conditions)| {
            let conditions = serde_json::to_string(conditions).expect("serialisable");
            [conditions, route_action(target)]
        });
        for (i, key) in keys.into_iter().enumerate() {
            let value = values.as_ref().map(|v| v[i].clone());
            marker.set(rollout, &key, value.is_some());
            if existing.get(&key) != value.as_ref() {
                annotations.insert(key, value);
            }
        }
    }
    if marker.0 != before.0 {
        annotations.insert(MANAGED_ACTIONS.to_string(), Some(marker.write()));
    }
    let rules = route_paths(&ingress.rules, alb, want);
    let rules = (rules != ingress.rules).then_some(rules);
    (!annotations.is_empty() || rules.is_some()).then_some(RouteEdit { annotations, rules })
}

/// Whether `ingress` carries any of the managed routes, in part or whole
/// (an annotation or a path): matching requests may go to the canary.
pub fn carries_routes(ingress: &IngressView, alb: &Alb) -> bool {
    alb.managed_routes.iter().any(|route| {
        ingress.annotations.contains_key(&alb.conditions_key(route))
            || ingress
                .annotations
                .contains_key(&alb.route_action_key(route))
            || ingress.routes_to(route)
    })
}

/// The managed routes `ingress` carries in whole (conditions and action
/// annotations, and a path), in `managed_routes` order.
pub fn routes_carried(ingress: &IngressView, alb: &Alb) -> Vec<String> {
    alb.managed_routes
        .iter()
        .filter(|route| {
            ingress.annotations.contains_key(&alb.conditions_key(route))
                && ingress
                    .annotations
                    .contains_key(&alb.route_action_key(route))
                && ingress.routes_to(route)
        })
        .cloned()
        .collect()
}

/// The conditions of each route `ingress` carries in whole, in the order
/// `canonical` gives them (what the LB controller makes listener rules of).
pub fn carried_conditions(ingress: &IngressView, alb: &Alb) -> Vec<Vec<HeaderCondition>> {
    routes_carried(ingress, alb)
        .iter()
        .filter_map(|route| {
            let json = ingress.annotations.get(&alb.conditions_key(route))?;
            let conditions: Vec<HeaderCondition> = serde_json::from_str(json).ok()?;
            Some(crate::world::canonical(&conditions))
        })
        .collect()
}

/// `rules` with the managed routes' paths replaced by `want`'s: before
/// each path backed by the root Service, one copy per route, in order.
fn route_paths(rules: &[IngressRule], alb: &Alb, want: &[Route]) -> Vec<IngressRule> {
    let managed = |p: &HTTPIngressPath| {
        backend_action(p).is_some_and(|name| alb.managed_routes.iter().any(|r| r == name))
    };
    let mut rules = rules.to_vec();
    for rule in &mut rules {
        let Some(http) = &mut rule.http else {
            continue;
        };
        let mut paths = Vec::new();
        for path in http.paths.iter().filter(|p| !managed(p)) {
            if backend_action(path) == Some(alb.root_service.as_str()) {
                for (route, _) in want {
                    let mut copy = path.clone();
                    if let Some(service) = &mut copy.backend.service {
                        service.name = route.to_string();
                    }
                    paths.push(copy);
                }
            }
            paths.push(path.clone());
        }
        http.paths = paths;
    }
    rules
}

/// The Service name of a path backed by an action annotation.
fn backend_action(path: &HTTPIngressPath) -> Option<&str> {
    let service = path.backend.service.as_ref()?;
    let port = service.port.as_ref()?.name.as_deref();
    (port == Some(USE_ANNOTATION)).then_some(service.name.as_str())
}

impl IngressView {
    /// Whether some rule sends a path to `service`'s action annotation.
    pub fn routes_to(&self, service: &str) -> bool {
        self.rules
            .iter()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| &h.paths)
            .any(|p| backend_action(p) == Some(service))
    }
}

/// The managed-actions marker: `<rollout>:<annotation key>` entries, other
/// Rollouts' kept as they are.
pub(super) struct Marker(Vec<String>);

impl Marker {
    pub(super) fn read(annotations: &BTreeMap<String, String>) -> Marker {
        let entries = annotations.get(MANAGED_ACTIONS).map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        });
        Marker(entries.unwrap_or_default())
    }

    pub(super) fn set(&mut self, rollout: &str, key: &str, managed: bool) {
        let entry = format!("{rollout}:{key}");
        let at = self.0.iter().position(|e| *e == entry);
        match (at, managed) {
            (None, true) => self.0.push(entry),
            (Some(i), false) => {
                self.0.remove(i);
            }
            _ => {}
        }
    }

    pub(super) fn write(&self) -> String {
        self.0.join(",")
    }
}
