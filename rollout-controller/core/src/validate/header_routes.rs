//! `managedRoutes` and `setHeaderRoute`, validated into the ALB listener
//! conditions the AWS Load Balancer Controller takes: header values are
//! compared case-insensitively with `*` and `?` as wildcards (in `exact`
//! too, as Argo Rollouts writes them); `prefix` becomes `<prefix>*`;
//! `regex` cannot be expressed in its `conditions` annotation.

use crate::alb::routes::HeaderCondition;
use crate::types::{HeaderRoutingMatch, SetHeaderRoute, TrafficRouting};

use super::{Plan, StepKind};
use crate::decide::weight_before;

/// A `setHeaderRoute` step: `conditions` empty removes the route.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderRoute {
    pub name: String,
    pub conditions: Vec<HeaderCondition>,
}

/// ALB quotas: match evaluations per condition and per rule, value length.
/// The route's own path pattern takes up to two of a rule's five (a
/// `Prefix` path is `/p` and `/p/*`), and one of its five wildcards.
const VALUES_PER_CONDITION: usize = 3;
const VALUES_PER_ROUTE: usize = 3;
const WILDCARDS_PER_ROUTE: usize = 4;
const MAX_VALUE: usize = 128;
const MAX_HEADER_NAME: usize = 40;

/// `trafficRouting.managedRoutes` (at path `t`): names for Ingress paths,
/// each once, not the root Service's; ALB through an Ingress only.
pub(super) fn managed_routes(
    t: &str,
    tr: &TrafficRouting,
    root_service: &str,
    errors: &mut Vec<String>,
) -> Vec<String> {
    let Some(routes) = &tr.managed_routes else {
        return Vec::new();
    };
    if tr.alb.as_ref().is_some_and(|a| a.direct.is_some()) {
        errors.push(format!(
            "{t}.managedRoutes: not with alb.direct (the AWS Load Balancer Controller builds a header route's listener rule from the Ingress)"
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let at = format!("{t}.managedRoutes[{i}].name");
        let name = &route.name;
        if !dns_label(name) {
            errors.push(format!(
                "{at}: {name:?} must be a DNS label (lower-case letters, digits and '-', at most 63; it names the route's Ingress backend)"
            ));
        } else if names.contains(name) {
            errors.push(format!("{at}: {name:?} is named twice"));
        } else if name == root_service {
            errors.push(format!(
                "{at}: {name:?} is the rootService (its actions annotation holds the weights)"
            ));
        }
        names.push(name.clone());
    }
    names
}

fn dns_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(ok)
}

/// A `setHeaderRoute` step on its own (the route's name is checked against
/// `managedRoutes` with the plan).
pub(super) fn header_route(step: &SetHeaderRoute) -> Result<HeaderRoute, String> {
    let p = "setHeaderRoute";
    if step.name.is_empty() {
        return Err(format!("{p}.name: required (one of managedRoutes)"));
    }
    let Some(matches) = &step.match_ else {
        return Ok(HeaderRoute {
            name: step.name.clone(),
            conditions: Vec::new(),
        });
    };
    if matches.is_empty() {
        return Err(format!(
            "{p}.match: give at least one header (or leave match out to remove the route)"
        ));
    }
    let mut conditions: Vec<HeaderCondition> = Vec::new();
    for (i, m) in matches.iter().enumerate() {
        let (name, value) = header_match(&format!("{p}.match[{i}]"), m)?;
        // Values of one header are alternatives in one condition (as
        // Argo); different headers must all match.
        match conditions.iter_mut().find(|c| {
            c.http_header_config
                .http_header_name
                .eq_ignore_ascii_case(&name)
        }) {
            Some(c) => c.http_header_config.values.push(value),
            None => conditions.push(HeaderCondition::http_header(&name, vec![value])),
        }
    }
    let values = conditions.iter().map(|c| c.http_header_config.values.len());
    if let Some(c) = conditions
        .iter()
        .find(|c| c.http_header_config.values.len() > VALUES_PER_CONDITION)
    {
        return Err(format!(
            "{p}.match: the ALB compares one header with at most {VALUES_PER_CONDITION} values, {:?} has {}",
            c.http_header_config.http_header_name,
            c.http_header_config.values.len()
        ));
    }
    let total: usize = values.sum();
    if total > VALUES_PER_ROUTE {
        return Err(format!(
            "{p}.match: at most {VALUES_PER_ROUTE} header values per route, got {total} (an ALB rule evaluates at most 5 matches, and the route's path takes up to 2)"
        ));
    }
    let wildcards: usize = conditions
        .iter()
        .flat_map(|c| &c.http_header_config.values)
        .map(|v| v.matches(['*', '?']).count())
        .sum();
    if wildcards > WILDCARDS_PER_ROUTE {
        return Err(format!(
            "{p}.match: at most {WILDCARDS_PER_ROUTE} wildcards (* or ?) per route, got {wildcards} (an ALB rule takes 5, and the route's path may take 1)"
        ));
    }
    Ok(HeaderRoute {
        name: step.name.clone(),
        conditions,
    })
}

/// One match as the ALB compares it: `(header name, value)`.
fn header_match(at: &str, m: &HeaderRoutingMatch) -> Result<(String, String), String> {
    let name = &m.header_name;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.chars().all(token) {
        return Err(format!(
            "{at}.headerName: {name:?} must be an HTTP header name of 1 to {MAX_HEADER_NAME} characters (the ALB's limit)"
        ));
    }
    let v = &m.header_value;
    let given = [&v.exact, &v.prefix, &v.regex];
    if given.iter().filter(|g| g.is_some()).count() != 1 {
        return Err(format!(
            "{at}.headerValue: exactly one of exact, prefix or regex must be set"
        ));
    }
    if v.regex.is_some() {
        return Err(format!(
            "{at}.headerValue.regex: the AWS Load Balancer Controller's conditions annotation takes header values, not regular expressions; use exact (with the wildcards * and ?) or prefix"
        ));
    }
    let value = match (&v.exact, &v.prefix) {
        (Some(exact), _) => exact.clone(),
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => unreachable!("one of exact or prefix"),
    };
    let visible = |c: char| c.is_ascii_graphic() || c == ' ';
    if value.is_empty() || value.len() > MAX_VALUE || !value.chars().all(visible) {
        return Err(format!(
            "{at}.headerValue: {value:?} must be 1 to {MAX_VALUE} visible ASCII characters (the ALB's limit)"
        ));
    }
    Ok((name.clone(), value))
}

/// Each setHeaderRoute names a managed route, needs trafficRouting, and
/// sends requests only to a canary that has pods at that step.
pub(super) fn check_header_routes(c: &str, plan: &Plan, errors: &mut Vec<String>) {
    let managed = plan.alb.as_ref().map_or(&[][..], |a| &a.managed_routes[..]);
    for (i, step) in plan.steps.iter().enumerate() {
        let StepKind::SetHeaderRoute(route) = step else {
            continue;
        };
        let at = format!("{c}.steps[{i}].setHeaderRoute");
        if plan.alb.is_none() {
            errors.push(format!(
                "{at}: needs trafficRouting.alb (the ALB sends the matching requests to the canary)"
            ));
        } else if !managed.contains(&route.name) {
            errors.push(format!(
                "{at}.name: {:?} is not in trafficRouting.managedRoutes",
                route.name
            ));
        } else if !route.conditions.is_empty()
            && plan.canary_pods(i + 1, weight_before(plan, i)) == 0
        {
            errors.push(format!(
                "{at}: sends requests to the canary, which has no pods at this step (the ALB would answer 503): put a setWeight or setCanaryScale before it"
            ));
        }
    }
}

impl Plan {
    /// The header routes in force while step `index` runs (set by it and
    /// the steps before, not removed since), in `managedRoutes` order.
    pub fn routes_at(&self, index: usize) -> Vec<(&str, &[HeaderCondition])> {
        let managed = self.alb.as_ref().map_or(&[][..], |a| &a.managed_routes[..]);
        let mut set: Vec<&HeaderRoute> = Vec::new();
        for step in &self.steps[..(index + 1).min(self.steps.len())] {
            if let StepKind::SetHeaderRoute(route) = step {
                set.retain(|r| r.name != route.name);
                if !route.conditions.is_empty() {
                    set.push(route);
                }
            }
        }
        managed
            .iter()
            .filter_map(|name| set.iter().find(|r| &r.name == name))
            .map(|r| (r.name.as_str(), &r.conditions[..]))
            .collect()
    }
}
