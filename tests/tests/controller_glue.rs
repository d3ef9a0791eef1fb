//! The kube glue against a mock API server, as scenarios (kube-rs/
//! controller-rs's fixtures): each test names what the caches hold and what
//! the API server will be asked (`Scenario`), runs the glue, and checks
//! what was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_tests::fixtures::{
    ACTION, Cached, Scenario, TestRollout as _, deployment, ingress_with, mock_api, service,
    test_context, timeout_after_1s,
};
use gantry_tests::kube_fake;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use rollout_controller::leader::Elector;
use rollout_controller::reconcile::{evict_pod, observe, reconcile, scale_deployment};
use rollout_controller::replica_sets::move_pod_metadata;
use rollout_core::types::Rollout;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn first_reconcile_creates_the_replica_set_and_sets_weights() {
    let (ctx, api) = test_context(true, Cached::standard());
    let rollout = Rollout::test();
    let server = api.run(Scenario::FirstReconcile(rollout.clone()));
    let action = reconcile(rollout.cached(), ctx).await.unwrap();
    // Looked at again when the progress deadline (Argo's default 600s) runs out.
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(600)));
    let sent = timeout_after_1s(server).await;

    // The first ReplicaSet: hash label on it, its selector and its pods; owned by the Rollout.
    let rs = sent.replica_set();
    let hash = rs["metadata"]["labels"]["rollouts-pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs["metadata"]["name"], format!("backend-{hash}"));
    assert_eq!(rs["spec"]["replicas"], 2);
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"],
        json!({"app": "backend", "rollouts-pod-template-hash": hash})
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["rollouts-pod-template-hash"],
        hash
    );
    assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);

    // 100% to stable, in Argo's exact JSON, plus the managed marker.
    assert_eq!(
        sent.ingress_patch(),
        &json!({"metadata": {"annotations": {
            ACTION: r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"backend-service-canary","ServicePort":"80","Weight":0},{"ServiceName":"backend-service","ServicePort":"80","Weight":100}]}}"#,
            "gantry.dev/managed-alb-actions": format!("backend:{ACTION}")}}})
    );

    let status = &sent.status_patch()["status"];
    assert_eq!(status["phase"], "Progressing");
    assert_eq!(status["currentPodHash"], hash);
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(sent.event()["reason"], "RolloutProgressing");
}

/// A status field back at its default is sent as `null`: a merge patch that
/// left it out would keep the old value (the bug that skipped every pause
/// after the first promote). Fields that did not change are not sent.
#[tokio::test]
async fn the_status_patch_clears_what_the_decision_cleared() {
    let (ctx, api) = test_context(true, Cached::standard());
    let rollout = Rollout::test().with_status(json!({
        "controllerPause": true, "abort": true, "promoteFull": true,
        "abortedAt": "2026-01-01T00:00:00Z",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
        "restartedAt": "2026-01-01T00:00:00Z"}));
    let server = api.run(Scenario::FirstReconcile(rollout.clone()));
    reconcile(rollout.cached(), ctx).await.unwrap();
    let sent = timeout_after_1s(server).await;
    let status = &sent.status_patch()["status"];
    for cleared in [
        "controllerPause",
        "abort",
        "promoteFull",
        "abortedAt",
        "pauseConditions",
    ] {
        assert_eq!(
            status.get(cleared),
            Some(&Value::Null),
            "{cleared}: {status}"
        );
    }
    assert!(status.get("restartedAt").is_none(), "{status}");
    assert_eq!(status["phase"], "Progressing");
}

#[tokio::test]
async fn a_follower_sends_nothing() {
    let (ctx, api) = test_context(false, Cached::standard());
    reconcile(Rollout::test().cached(), ctx).await.unwrap();
    api.assert_silent().await;
}

#[tokio::test]
async fn deleting_a_rollout_resets_the_weights_before_releasing_it() {
    let managed = json!({"gantry.dev/managed-alb-actions": format!("backend:{ACTION}")});
    let (ctx, api) = test_context(true, Cached::standard().ingress_annotations(managed));
    let server = api.run(Scenario::Cleanup);
    reconcile(Rollout::test().deleting().cached(), ctx)
        .await
        .unwrap();
    let sent = timeout_after_1s(server).await;
    let action = sent.ingress_patch()["metadata"]["annotations"][ACTION]
        .as_str()
        .unwrap();
    assert!(
        action.contains(r#""ServiceName":"backend-service","ServicePort":"80","Weight":100"#),
        "{action}"
    );
    // The finalizer goes last (a JSON patch on the Rollout).
    assert!(
        sent.rollout_patch().to_string().contains("remove"),
        "{:?}",
        sent.rollout_patch()
    );
}

#[tokio::test]
async fn direct_mode_reads_no_ingress_and_waits_for_the_elbv2_api() {
    let (ctx, api) = test_context(true, Cached::standard());
    let rollout = Rollout::test().direct();
    let server = api.run(Scenario::FirstReconcileDirectWithoutElbv2(rollout.clone()));
    let action = reconcile(rollout.cached(), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    let sent = timeout_after_1s(server).await;
    let status = &sent.status_patch()["status"];
    assert_eq!(status["phase"], "Progressing");
    assert_eq!(
        status["alb"]["message"],
        "cannot verify the ALB weights: direct mode needs the ELBv2 API, which is not configured"
    );
}

#[tokio::test]
async fn deleting_a_direct_mode_rollout_without_the_elbv2_api_touches_no_ingress() {
    let (ctx, api) = test_context(true, Cached::standard());
    let server = api.run(Scenario::CleanupWithoutIngress);
    reconcile(Rollout::test().direct().deleting().cached(), ctx)
        .await
        .unwrap();
    let sent = timeout_after_1s(server).await;
    assert_eq!(sent.0.len(), 1, "{sent:#?}");
    assert!(sent.rollout_patch().to_string().contains("remove"));
}

#[tokio::test]
async fn leader_election_takes_free_or_expired_leases_only() {
    let (client, api) = mock_api();
    let elector = Elector::new(client, "gantry-system", "lock", "me");
    let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
    let server = api.run(Scenario::LeaseContests);
    assert!(elector.try_acquire(now).await.unwrap(), "no lease: created");
    assert!(!elector.try_acquire(now).await.unwrap(), "held and fresh");
    assert!(elector.try_acquire(now).await.unwrap(), "held but expired");
    assert!(!elector.try_acquire(now).await.unwrap(), "lost the race");
    let sent = timeout_after_1s(server).await;
    let writes = sent.lease_writes();
    assert_eq!(writes[0]["spec"]["holderIdentity"], "me");
    // The takeover replaces the expired lease at the version it read.
    assert_eq!(writes[1]["metadata"]["resourceVersion"], "7");
    assert_eq!(writes[1]["spec"]["holderIdentity"], "me");
    assert_eq!(writes[1]["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn pods_are_read_only_while_a_restart_is_pending_and_evicted_politely() {
    let (ctx, api) = test_context(true, Cached::standard());
    let restarting = Rollout::test().restarting("2026-01-01T00:00:00Z");
    let plan = rollout_core::validate::validate(&restarting.spec).unwrap();
    let server = api.run(Scenario::RestartEvictionRefused);
    let world = observe(&restarting, Some(&plan), "shop", &ctx)
        .await
        .unwrap();
    assert_eq!(world.pods.len(), 2);
    assert_eq!(world.pods[0].hash, "aaa");
    assert!(!world.pods[0].terminating && world.pods[1].terminating);
    // Refused by a PodDisruptionBudget: not an error.
    evict_pod(&ctx.client, "shop", "backend-aaa-1")
        .await
        .unwrap();
    let sent = timeout_after_1s(server).await;
    let eviction = sent.body(
        http::Method::POST,
        "/api/v1/namespaces/shop/pods/backend-aaa-1/eviction?",
    );
    assert_eq!(eviction["metadata"]["name"], "backend-aaa-1");
}

#[tokio::test]
async fn a_workload_ref_rollout_runs_its_deployments_template_with_role_metadata() {
    let mut objects = vec![deployment()];
    objects.extend([
        service("backend-service"),
        service("backend-service-canary"),
        ingress_with(json!({})),
    ]);
    let (ctx, api) = test_context(true, Cached::of(objects));
    let mut rollout = Rollout::test().referencing_deployment("progressively");
    rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .stable_metadata =
        Some(serde_json::from_value(json!({"labels": {"role": "stable"}})).unwrap());
    let plan = rollout_core::validate::validate(&rollout.spec).unwrap();
    let server = api.run(Scenario::WorkloadFirstReconcile(rollout.clone()));
    let world = observe(&rollout, Some(&plan), "shop", &ctx).await.unwrap();
    assert_eq!(world.workload.as_ref().unwrap().replicas, 2);
    reconcile(rollout.cached(), ctx.clone()).await.unwrap();
    scale_deployment(&ctx.client, "shop", "backend", 1, None)
        .await
        .unwrap();
    let sent = timeout_after_1s(server).await;

    let rs = sent.replica_set();
    let template = &rs["spec"]["template"];
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "backend:from-deployment"
    );
    assert_eq!(template["metadata"]["labels"]["role"], "stable");
    assert_eq!(
        rs["metadata"]["labels"].get("role"),
        None,
        "role labels are on pods only"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["gantry.dev/pod-metadata"],
        r#"{"labels":{"role":"stable"}}"#
    );
    assert_eq!(rs["spec"]["selector"]["matchLabels"]["app"], "backend");
    let scaled = sent.body(
        http::Method::PATCH,
        "/apis/apps/v1/namespaces/shop/deployments/backend?",
    );
    assert_eq!(scaled, &json!({"spec": {"replicas": 1}}));
}

#[tokio::test]
async fn role_metadata_moves_onto_the_template_and_the_running_pods() {
    let (ctx, api) = test_context(true, Cached::standard());
    let server = api.run(Scenario::RoleMetadataMoved);
    let meta = |yaml: &str| serde_yaml::from_str(yaml).unwrap();
    let (from, to) = (
        meta("{labels: {role: canary, track: canary}, annotations: {dash: c}}"),
        meta("{labels: {role: stable}}"),
    );
    let rollout = Rollout::test();
    let selector = rollout.spec.selector.clone();
    move_pod_metadata(
        &ctx.client,
        &rollout,
        &selector,
        "shop",
        ("backend-aaa", "aaa"),
        (&from, &to),
        None,
    )
    .await
    .unwrap();
    let sent = timeout_after_1s(server).await;
    let rs = sent.body(
        http::Method::PATCH,
        "/apis/apps/v1/namespaces/shop/replicasets/backend-aaa?",
    );
    let moved = json!({"labels": {"role": "stable", "track": null}, "annotations": {"dash": null}});
    assert_eq!(rs["spec"]["template"]["metadata"], moved);
    assert_eq!(
        rs["metadata"]["annotations"]["gantry.dev/pod-metadata"],
        r#"{"labels":{"role":"stable"}}"#
    );
    let pod = sent.body(
        http::Method::PATCH,
        "/api/v1/namespaces/shop/pods/backend-aaa-1?",
    );
    assert_eq!(pod, &json!({"metadata": moved}));
}

/// Two replicas on one (fake, real-HTTP) API server: the leader stops and
/// releases its lease; the standby leads within a second, not after the
/// 15 s the lease would take to expire.
#[test]
fn a_released_lease_is_taken_by_the_standby_within_a_second() {
    let (api, _server) = kube_fake::start(true, &["gantry-system"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let elector = |id: &str| Arc::new(Elector::new(api.client(), "gantry-system", "lock", id));
        let (a, b) = (elector("a"), elector("b"));
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let (tx_a, mut leading_a) = watch::channel(false);
        let (tx_b, mut leading_b) = watch::channel(false);
        let run_a = tokio::spawn(a.clone().run(tx_a, stop_a.clone()));
        leading_a.wait_for(|l| *l).await.unwrap();
        let run_b = tokio::spawn(b.clone().run(tx_b, stop_b.clone()));
        // A fresh lease keeps the standby out.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!*leading_b.borrow());

        stop_a.cancel();
        run_a.await.unwrap();
        assert!(!*leading_a.borrow());
        a.release().await.unwrap();
        let released = Instant::now();
        tokio::time::timeout(Duration::from_secs(1), leading_b.wait_for(|l| *l))
            .await
            .expect("the standby leads within a second of the release")
            .unwrap();
        let lease = api.lease("gantry-system", "lock").unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "b");
        assert_eq!(lease["spec"]["leaseTransitions"], 1);
        eprintln!("standby led {:?} after the release", released.elapsed());

        // Releasing a lease one does not hold changes nothing.
        a.release().await.unwrap();
        assert_eq!(
            api.lease("gantry-system", "lock").unwrap()["spec"]["holderIdentity"],
            "b"
        );
        stop_b.cancel();
        run_b.await.unwrap();
    });
}

#[test]
fn a_missing_lease_namespace_names_the_namespace_and_the_flag() {
    let (api, _server) = kube_fake::start(true, &["default"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(async {
            let elector = Elector::new(api.client(), "gantry-sytem", "lock", "me");
            elector.try_acquire(Timestamp::now()).await
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the lease namespace \"gantry-sytem\" does not exist: create it, or name an existing one with --lease-namespace (POD_NAMESPACE)"
    );
}
