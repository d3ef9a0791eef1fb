//! The Rollout the decision and plan tests start from.

use rollout_core::types::{AlbTrafficRouting, Rollout};

/// `backend` in `shop`: 5 replicas, ALB routing through Ingress `shop`.
/// The simulated ALB acts at once, so no settle or drain time is assumed
/// (the traffic-safety tests set their own timing).
pub fn rollout(steps: &str) -> Rollout {
    let yaml = format!(
        r#"
apiVersion: gantry.dev/v1alpha1
kind: Rollout
metadata: {{name: backend, namespace: shop, generation: 1}}
spec:
  replicas: 5
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata: {{labels: {{app: backend}}}}
    spec: {{containers: [{{name: api, image: "backend:1"}}]}}
  strategy:
    canary:
      canaryService: backend-service-canary
      stableService: backend-service
      trafficRouting: {{alb: {{ingress: shop, servicePort: 80, targetHealth: {{settleSeconds: 0, drainSeconds: 0}}}}}}
      steps: {steps}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

/// The Rollout's `trafficRouting.alb`.
// Each test binary compiles this module; not all of them use this.
#[allow(dead_code)]
pub fn alb_routing(r: &mut Rollout) -> &mut AlbTrafficRouting {
    let canary = r.spec.strategy.canary.as_mut().unwrap();
    canary
        .traffic_routing
        .as_mut()
        .unwrap()
        .alb
        .as_mut()
        .unwrap()
}
