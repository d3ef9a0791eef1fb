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
use std::time::Duration;

use gantry_tests::binary;
use gantry_tests::cluster::{install_crds, play_kubelet, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rollout_core::alb::parse_action;
use rollout_core::types::{Phase, Rollout, RolloutStatus};
use serde_json::json;

const KEY: &str = "alb.ingress.kubernetes.io/actions.backend-service";

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    install_crds(&client).await;
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
            .args(["--namespace", &ns, "--lease-namespace", &ns])
            .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cluster = Cluster::create_app(&client, &ns).await;

    // Without nodes nothing runs pods: stand in for the kubelet.
    let nodes: Api<Node> = Api::all(client.clone());
    let has_nodes = !nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let kubelet = (!has_nodes).then(|| tokio::spawn(play_kubelet(pods)));

    // First deploy → Healthy, 0/100.
    let first = wait_for("the first deploy to be Healthy", async || {
        cluster.phase(Phase::Healthy).await
    })
    .await;
    let mut stable = first.status.unwrap().stable_rs.unwrap();
    assert_eq!(cluster.canary_weight().await, Some(0));
    // The second and third releases: each stops at every pause.
    for rev in ["2", "3"] {
        stable = cluster.release(rev, &stable).await;
    }
    cluster.abort("4").await;

    if let Some(k) = kubelet {
        k.abort();
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// The example app in one namespace: two Services, an Ingress, a Rollout.
struct Cluster {
    rollouts: Api<Rollout>,
    services: Api<Service>,
    ingresses: Api<Ingress>,
    replica_sets: Api<ReplicaSet>,
}

impl Cluster {
    async fn create_app(client: &Client, ns: &str) -> Cluster {
        let c = Cluster {
            rollouts: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            ingresses: Api::namespaced(client.clone(), ns),
            replica_sets: Api::namespaced(client.clone(), ns),
        };
        let post = PostParams::default();
        for name in ["backend-service", "backend-service-canary"] {
            let svc = json!({"metadata": {"name": name}, "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}});
            let svc = serde_json::from_value(svc).unwrap();
            c.services.create(&post, &svc).await.unwrap();
        }
        let ingress = json!({"metadata": {"name": "shop"}, "spec": {"rules": [{"http": {"paths": [{"path": "/api", "pathType": "Prefix",
            "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}});
        let ingress = serde_json::from_value(ingress).unwrap();
        c.ingresses.create(&post, &ingress).await.unwrap();
        let rollout = json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "backend"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}, "annotations": {"e2e/revision": "1"}},
                    "spec": {"terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}},
                "strategy": {"canary": {"canaryService": "backend-service-canary", "stableService": "backend-service",
                    "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                    "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80,
                        "targetHealth": {"settleSeconds": 0, "drainSeconds": 0}}},
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "5s"}},
                              {"setWeight": 50}, {"pause": {}}]}}}
        });
        let rollout = serde_json::from_value(rollout).unwrap();
        c.rollouts.create(&post, &rollout).await.unwrap();
        c
    }

    async fn phase(&self, want: Phase) -> Option<Rollout> {
        let r = self.rollouts.get("backend").await.ok()?;
        (r.status.as_ref()?.phase? == want).then_some(r)
    }

    /// The status while paused at step `index`.
    async fn at_step(&self, index: i32) -> Option<RolloutStatus> {
        let s = self.rollouts.get("backend").await.ok()?.status?;
        (s.phase? == Phase::Paused && s.current_step_index? == index).then_some(s)
    }

    async fn canary_weight(&self) -> Option<i32> {
        let ing = self.ingresses.get("shop").await.ok()?;
        parse_action(ing.annotations().get(KEY)?)
            .ok()?
            .weight_of("backend-service-canary")
    }

    /// A new template: the `e2e/revision` annotation.
    async fn set_revision(&self, rev: &str) {
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {"e2e/revision": rev}}}}});
        self.rollouts
            .patch("backend", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// What Argo's promote and abort write: the status subresource.
    async fn human(&self, status: serde_json::Value) {
        let patch = Patch::Merge(json!({ "status": status }));
        self.rollouts
            .patch_status("backend", &PatchParams::default(), &patch)
            .await
            .unwrap();
    }

    /// Release `rev` on top of `stable`: 25% and a 5 s pause that holds,
    /// 50% and an untimed pause that holds until promoted, then complete
    /// with nothing left over. The new stable hash.
    async fn release(&self, rev: &str, stable: &str) -> String {
        self.set_revision(rev).await;
        let what = |step: &str| format!("release {rev} to {step}");
        let timed = wait_for(&what("pause at 25%"), async || self.at_step(1).await).await;
        assert_eq!(self.canary_weight().await, Some(25), "release {rev}");
        let canary = timed.current_pod_hash.clone().unwrap();
        assert_ne!(canary, stable);
        let untimed = wait_for(&what("pause at 50%"), async || self.at_step(3).await).await;
        assert_eq!(self.canary_weight().await, Some(50), "release {rev}");
        let started = |s: &RolloutStatus| {
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
            self.at_step(3).await.is_some(),
            "release {rev} went on without a promote"
        );
        assert_eq!(self.canary_weight().await, Some(50));

        self.human(json!({"pauseConditions": null})).await;
        let done = wait_for(&what("complete"), async || {
            let r = self.phase(Phase::Healthy).await?;
            (r.status.as_ref()?.stable_rs.as_deref() == Some(canary.as_str())).then_some(r)
        })
        .await;
        let status = done.status.unwrap();
        assert!(!status.controller_pause && status.pause_conditions.is_empty());
        assert_eq!(status.message, None);
        assert_eq!(self.canary_weight().await, Some(0));
        let service = self.services.get("backend-service").await.unwrap();
        let selector = service.spec.unwrap().selector.unwrap();
        assert_eq!(selector["rollouts-pod-template-hash"], canary);
        wait_for("the old stable to scale down", async || {
            let rs = self
                .replica_sets
                .get(&format!("backend-{stable}"))
                .await
                .ok()?;
            (rs.spec?.replicas == Some(0)).then_some(())
        })
        .await;
        canary
    }

    /// Release `rev` and abort it at its first pause: Degraded, all
    /// traffic back on stable.
    async fn abort(&self, rev: &str) {
        self.set_revision(rev).await;
        wait_for(&format!("release {rev} to pause"), async || {
            self.at_step(1).await
        })
        .await;
        assert_eq!(self.canary_weight().await, Some(25));
        self.human(json!({"abort": true})).await;
        wait_for("the abort", async || self.phase(Phase::Degraded).await).await;
        wait_for("weights back to stable", async || {
            (self.canary_weight().await == Some(0)).then_some(())
        })
        .await;
    }
}
