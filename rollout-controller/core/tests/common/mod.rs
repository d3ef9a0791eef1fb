//! The Rollout the decision and plan tests start from.

use rollout_core::types::Rollout;

/// `backend` in `shop`: 5 replicas, ALB routing through Ingress `shop`.
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
      trafficRouting: {{alb: {{ingress: shop, servicePort: 80}}}}
      steps: {steps}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}
