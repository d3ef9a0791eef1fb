//! The AWS Load Balancer Controller's forward-action annotation, in exactly
//! Argo Rollouts' JSON shape, so an Ingress managed by Argo reads the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{Alb, Plan};

pub mod routes;

/// Marks which action annotations a Rollout manages: `<rollout>:<key>`.
pub const MANAGED_ACTIONS: &str = "gantry.dev/managed-alb-actions";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Action {
    #[serde(rename = "Type")]
    pub type_: String,
    pub forward_config: ForwardConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForwardConfig {
    pub target_groups: Vec<TargetGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_stickiness_config: Option<Stickiness>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stickiness {
    pub enabled: bool,
    pub duration_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetGroup {
    pub service_name: String,
    /// A string, as the LB controller expects.
    pub service_port: String,
    pub weight: i64,
}

impl Action {
    /// The weight sent to `service`, if it is one of the target groups.
    pub fn weight_of(&self, service: &str) -> Option<i32> {
        self.forward_config
            .target_groups
            .iter()
            .find(|t| t.service_name == service)
            .map(|t| t.weight as i32)
    }
}

/// The split to write: canary first, then stable (Argo's order).
pub struct ForwardWeights {
    pub canary_service: String,
    pub stable_service: String,
    pub port: i32,
    pub canary_weight: i32,
    /// `stickinessConfig` (enabled), in seconds.
    pub stickiness: Option<u64>,
}

impl ForwardWeights {
    /// `canary_weight`% to the plan's canary Service, the rest to its
    /// stable one, on `alb`'s port and with its stickiness.
    pub fn of(plan: &Plan, alb: &Alb, canary_weight: i32) -> ForwardWeights {
        ForwardWeights {
            canary_service: plan.canary_service.clone(),
            stable_service: plan.stable_service.clone(),
            port: alb.service_port,
            canary_weight,
            stickiness: alb.stickiness.map(|d| d.as_secs()),
        }
    }
}

pub fn forward_action(w: &ForwardWeights) -> String {
    let group = |service: &str, weight: i32| TargetGroup {
        service_name: service.to_string(),
        service_port: w.port.to_string(),
        weight: weight.into(),
    };
    let action = Action {
        type_: "forward".into(),
        forward_config: ForwardConfig {
            target_groups: vec![
                group(&w.canary_service, w.canary_weight),
                group(&w.stable_service, 100 - w.canary_weight),
            ],
            target_group_stickiness_config: w.stickiness.map(|seconds| Stickiness {
                enabled: true,
                duration_seconds: seconds,
            }),
        },
    };
    serde_json::to_string(&action).expect("serialisable")
}

pub fn parse_action(json: &str) -> Result<Action, serde_json::Error> {
    serde_json::from_str(json)
}

/// The annotations to set on the Ingress: the action, and this Rollout's
/// entry in the managed-actions marker (other Rollouts' entries kept).
pub fn annotations(
    existing: &BTreeMap<String, String>,
    rollout: &str,
    alb: &Alb,
    weights: &ForwardWeights,
) -> BTreeMap<String, Option<String>> {
    let key = alb.action_key();
    let mut marker = routes::Marker::read(existing);
    marker.set(rollout, &key, true);
    BTreeMap::from([
        (key, Some(forward_action(weights))),
        (MANAGED_ACTIONS.to_string(), Some(marker.write())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_json_is_argos_shape_with_zero_weights_written() {
        let w = ForwardWeights {
            canary_service: "backend-service-canary".into(),
            stable_service: "backend-service".into(),
            port: 80,
            canary_weight: 0,
            stickiness: None,
        };
        assert_eq!(
            forward_action(&w),
            r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"backend-service-canary","ServicePort":"80","Weight":0},{"ServiceName":"backend-service","ServicePort":"80","Weight":100}]}}"#
        );
        let parsed = parse_action(&forward_action(&w)).unwrap();
        assert_eq!(parsed.weight_of("backend-service"), Some(100));
        assert_eq!(parsed.weight_of("other"), None);
    }

    #[test]
    fn managed_marker_keeps_other_rollouts() {
        let alb = Alb {
            ingresses: vec!["web".into()],
            managed_routes: Vec::new(),
            stickiness: None,
            service_port: 80,
            root_service: "api".into(),
            annotation_prefix: "alb.ingress.kubernetes.io".into(),
            direct: None,
            gates: Default::default(),
        };
        let existing =
            BTreeMap::from([(MANAGED_ACTIONS.to_string(), "other:x/actions.y".to_string())]);
        let w = ForwardWeights {
            canary_service: "c".into(),
            stable_service: "api".into(),
            port: 8080,
            canary_weight: 10,
            stickiness: None,
        };
        let a = annotations(&existing, "api", &alb, &w);
        assert_eq!(
            a[MANAGED_ACTIONS].as_deref(),
            Some("other:x/actions.y,api:alb.ingress.kubernetes.io/actions.api")
        );
        assert!(
            a["alb.ingress.kubernetes.io/actions.api"]
                .as_deref()
                .unwrap()
                .contains(r#""ServicePort":"8080","Weight":10"#)
        );
    }
}
