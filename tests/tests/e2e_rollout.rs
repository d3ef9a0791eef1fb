//! End to end against any conforming cluster, when `KUBECONFIG` is set (CI
//! runs it on kind); skipped with a message otherwise. Installs the CRD,
//! runs the built `rollout-controller` scoped to a fresh namespace, and
//! drives three releases: each walks setWeight 25 → a timed pause that
//! holds → setWeight 50 → an untimed pause that holds until promoted →
//! complete; then a fourth is aborted. Without nodes nothing runs pods, so
//! the suite plays kubelet: it marks pods Ready through the pod status
//! subresource, and kube-controller-manager's ReplicaSet controller counts
//! them available as it would on a real node.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::binary;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use rollout_core::alb::parse_action;
use rollout_core::types::{AnalysisTemplate, Phase, Rollout};
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
    for crd in [Rollout::crd(), AnalysisTemplate::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &apply, &Patch::Apply(crd)).await.unwrap();
        wait_for(&format!("CRD {name} to be established"), async || {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
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
                "steps": [{"setWeight": 25}, {"pause": {"duration": "5s"}},
                          {"setWeight": 50}, {"pause": {}}]}}}
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let kubelet = (!has_nodes).then(|| tokio::spawn(play_kubelet(pods.clone())));
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
    let mut stable = first.status.unwrap().stable_rs.unwrap();
    assert_eq!(canary_weight().await, Some(0));

    let revision = |rev: &str| {
        Patch::Merge(
            json!({"spec": {"template": {"metadata": {"annotations": {"e2e/revision": rev}}}}}),
        )
    };
    let at_step = |index: i32| {
        let rollouts = rollouts.clone();
        async move || {
            let r = rollouts.get("backend").await.ok()?;
            let s = r.status.clone()?;
            (s.phase? == Phase::Paused && s.current_step_index? == index).then_some(s)
        }
    };
    // What Argo's promote and abort write: the status subresource.
    let human = async |status: serde_json::Value| {
        let patch = Patch::Merge(json!({ "status": status }));
        rollouts
            .patch_status("backend", &PatchParams::default(), &patch)
            .await
            .unwrap();
    };
    // The second and third releases: each stops at every pause.
    for rev in ["2", "3"] {
        rollouts
            .patch("backend", &PatchParams::default(), &revision(rev))
            .await
            .unwrap();
        let timed = wait_for(&format!("release {rev} to pause at 25%"), at_step(1)).await;
        assert_eq!(canary_weight().await, Some(25), "release {rev}");
        let canary = timed.current_pod_hash.clone().unwrap();
        assert_ne!(canary, stable);
        let untimed = wait_for(&format!("release {rev} to pause at 50%"), at_step(3)).await;
        assert_eq!(canary_weight().await, Some(50), "release {rev}");
        let started = |s: &rollout_core::types::RolloutStatus| {
            s.pause_conditions[0]
                .start_time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .unwrap()
        };
        let held = started(&untimed).duration_since(started(&timed));
        assert!(
            held.as_secs() >= 5,
            "release {rev}: the 5 s pause held {held:?}"
        );
        // The untimed pause holds until promoted.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            at_step(3)().await.is_some(),
            "release {rev} went on without a promote"
        );
        assert_eq!(canary_weight().await, Some(50));

        // Promote (Argo's status patch) → complete, with nothing left over.
        human(json!({"pauseConditions": null})).await;
        let done = wait_for(&format!("release {rev} to complete"), async || {
            let r = phase(Phase::Healthy)().await?;
            (r.status.as_ref()?.stable_rs.as_deref() == Some(canary.as_str())).then_some(r)
        })
        .await;
        let status = done.status.unwrap();
        assert!(!status.controller_pause && status.pause_conditions.is_empty());
        assert_eq!(status.message, None);
        assert_eq!(canary_weight().await, Some(0));
        let selector = services
            .get("backend-service")
            .await
            .unwrap()
            .spec
            .unwrap()
            .selector;
        assert_eq!(selector.unwrap()["rollouts-pod-template-hash"], canary);
        wait_for("the old stable to scale down", async || {
            let rs = replica_sets.get(&format!("backend-{stable}")).await.ok()?;
            (rs.spec?.replicas == Some(0)).then_some(())
        })
        .await;
        stable = canary;
    }

    // A fourth release, aborted → Degraded, all traffic back to stable.
    rollouts
        .patch("backend", &PatchParams::default(), &revision("4"))
        .await
        .unwrap();
    wait_for("release 4 to pause", at_step(1)).await;
    assert_eq!(canary_weight().await, Some(25));
    human(json!({"abort": true})).await;
    wait_for("the abort", phase(Phase::Degraded)).await;
    wait_for("weights back to stable", async || {
        (canary_weight().await == Some(0)).then_some(())
    })
    .await;

    if let Some(k) = kubelet {
        k.abort();
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// What a kubelet reports for a pod that started: Ready (a strategic merge
/// keeps the other conditions). The ReplicaSet controller derives its
/// ready and available counts from exactly this; patching ReplicaSet status
/// instead is overwritten by it.
async fn play_kubelet(pods: Api<Pod>) {
    loop {
        let listed = pods.list(&ListParams::default()).await;
        for pod in listed.map(|l| l.items).unwrap_or_default() {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(status),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
