//! End to end against a real cluster, when `KUBECONFIG` is set (CI runs it
//! on kind); skipped with a message otherwise. Installs the CRD, runs the
//! built `rollout-controller` scoped to a fresh namespace, and drives a
//! whole canary (create → new template → setWeight → pause → promote →
//! complete) and an abort. Without nodes, nothing makes pods ready, so the
//! suite then marks ReplicaSets available itself.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::binary;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use rollout_controller::alb::parse_action;
use rollout_controller::types::{Phase, Rollout};
use serde_json::json;

const KEY: &str = "alb.ingress.kubernetes.io/actions.backend-service";

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn canary_and_abort_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "e2e_rollout skipped: set KUBECONFIG to run it against a cluster (CI runs it on kind)"
        );
        return;
    }
    let client = Client::try_default()
        .await
        .expect("cluster from KUBECONFIG");
    let ns = format!("gantry-e2e-{}", std::process::id());
    let apply = PatchParams::apply("gantry-e2e").force();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("rollouts.gantry.dev", &apply, &Patch::Apply(Rollout::crd()))
        .await
        .unwrap();
    wait_for("the CRD to be established", async || {
        let crd = crds.get("rollouts.gantry.dev").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    let _controller = Controller(
        Command::new(binary("rollout-controller"))
            .args([
                "--namespace",
                &ns,
                "--lease-namespace",
                &ns,
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for name in ["backend-service", "backend-service-canary"] {
        let svc = json!({"metadata": {"name": name}, "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}});
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(svc).unwrap(),
            )
            .await
            .unwrap();
    }
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let ingress = json!({"metadata": {"name": "shop"}, "spec": {"rules": [{"http": {"paths": [{"path": "/api", "pathType": "Prefix",
        "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}});
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(ingress).unwrap(),
        )
        .await
        .unwrap();

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let rollout = json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "backend"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}, "annotations": {"e2e/revision": "1"}},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}},
            "strategy": {"canary": {"canaryService": "backend-service-canary", "stableService": "backend-service",
                "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80}},
                "steps": [{"setWeight": 50}, {"pause": {}}]}}}
    });
    rollouts
        .create(
            &PostParams::default(),
            &serde_json::from_value(rollout).unwrap(),
        )
        .await
        .unwrap();

    // Without nodes nothing runs pods: stand in for the kubelet.
    let nodes: Api<Node> = Api::all(client.clone());
    let has_nodes = !nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let fake_kubelet = (!has_nodes).then(|| {
        let rs = replica_sets.clone();
        tokio::spawn(async move {
            loop {
                for r in rs.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                    let n = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let status = json!({"status": {"replicas": n, "readyReplicas": n, "availableReplicas": n}});
                    let _ = rs.patch_status(&r.name_any(), &PatchParams::default(), &Patch::Merge(status)).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    });

    let phase = |want: Phase| {
        let rollouts = rollouts.clone();
        async move || {
            let r = rollouts.get("backend").await.ok()?;
            (r.status.as_ref()?.phase? == want).then_some(r)
        }
    };
    let canary_weight = async || -> Option<i32> {
        let ing = ingresses.get("shop").await.ok()?;
        parse_action(ing.annotations().get(KEY)?)
            .ok()?
            .weight_of("backend-service-canary")
    };

    // First deploy → Healthy, 0/100.
    let first = wait_for("the first deploy to be Healthy", phase(Phase::Healthy)).await;
    let stable = first.status.unwrap().stable_rs.unwrap();
    assert_eq!(canary_weight().await, Some(0));

    // New template → setWeight 50 → paused.
    let revision = |rev: &str| {
        Patch::Merge(
            json!({"spec": {"template": {"metadata": {"annotations": {"e2e/revision": rev}}}}}),
        )
    };
    rollouts
        .patch("backend", &PatchParams::default(), &revision("2"))
        .await
        .unwrap();
    let paused = wait_for("the canary to pause", phase(Phase::Paused)).await;
    assert_eq!(canary_weight().await, Some(50));
    let canary = paused.status.unwrap().current_pod_hash.unwrap();
    assert_ne!(canary, stable);

    // Promote (Argo's status patch) → complete.
    rollouts
        .patch_status(
            "backend",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pauseConditions": null}})),
        )
        .await
        .unwrap();
    let done = wait_for("the canary to complete", phase(Phase::Healthy)).await;
    assert_eq!(
        done.status.unwrap().stable_rs.as_deref(),
        Some(canary.as_str())
    );
    assert_eq!(canary_weight().await, Some(0));
    let selector = |name: &'static str| {
        let services = services.clone();
        async move || -> Option<BTreeMap<String, String>> {
            services.get(name).await.ok()?.spec?.selector
        }
    };
    assert_eq!(
        selector("backend-service")().await.unwrap()["rollouts-pod-template-hash"],
        canary
    );
    wait_for("the old stable to scale down", async || {
        let rs = replica_sets.get(&format!("backend-{stable}")).await.ok()?;
        (rs.spec?.replicas == Some(0)).then_some(())
    })
    .await;

    // Another template, then abort → Degraded, all traffic to stable.
    rollouts
        .patch("backend", &PatchParams::default(), &revision("3"))
        .await
        .unwrap();
    wait_for("the second canary to pause", phase(Phase::Paused)).await;
    assert_eq!(canary_weight().await, Some(50));
    rollouts
        .patch_status(
            "backend",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"abort": true}})),
        )
        .await
        .unwrap();
    wait_for("the abort", phase(Phase::Degraded)).await;
    wait_for("weights back to stable", async || {
        (canary_weight().await == Some(0)).then_some(())
    })
    .await;

    if let Some(k) = fake_kubelet {
        k.abort();
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
