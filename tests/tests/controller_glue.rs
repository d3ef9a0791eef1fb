//! The kube glue against a mock API server (kube-rs' tower-test pattern):
//! each test plays the API server's side and asserts the exact requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gantry_tests::kube_fake;
use gantry_tests::kube_mock::{self, ApiHandle, expect, respond};
use http::Method;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use rollout_controller::leader::Elector;
use rollout_controller::metrics::Metrics;
use rollout_controller::reconcile::{Context, FINALIZER, reconcile};
use rollout_core::types::Rollout;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn rollout(extra_meta: Value) -> Rollout {
    let mut r = json!({
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "backend", "namespace": "shop", "uid": "uid-1", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}},
                         "spec": {"containers": [{"name": "api", "image": "backend:1"}]}},
            "strategy": {"canary": {
                "canaryService": "backend-service-canary", "stableService": "backend-service",
                "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80}},
                "steps": [{"setWeight": 20}, {"pause": {}}]}}
        }
    });
    merge(&mut r["metadata"], extra_meta);
    serde_json::from_value(r).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
           "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}})
}

fn ingress(annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "shop", "namespace": "shop", "annotations": annotations},
           "spec": {"rules": [{"http": {"paths": [{"path": "/api", "pathType": "Prefix",
               "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}})
}

fn context(client: Client, leader: bool) -> Arc<Context> {
    let ctx = Context::new(
        client,
        Metrics::default(),
        rollout_prometheus::Client::new().unwrap(),
    );
    ctx.leader.store(leader, Ordering::Relaxed);
    Arc::new(ctx)
}

/// Answers the first reads of a reconcile: no ReplicaSets yet, both Services.
async fn no_replica_sets_and_both_services(handle: &mut ApiHandle) {
    let (_, s) = expect(
        handle,
        Method::GET,
        "/apis/apps/v1/namespaces/shop/replicasets?&labelSelector=app%3Dbackend",
    )
    .await;
    respond(
        s,
        200,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": []}),
    );
    for name in ["backend-service", "backend-service-canary"] {
        let (_, s) = expect(
            handle,
            Method::GET,
            &format!("/api/v1/namespaces/shop/services/{name}"),
        )
        .await;
        respond(s, 200, service(name));
    }
}

/// The first reads, then the Ingress (no weights on it yet).
async fn first_reads_with_ingress(handle: &mut ApiHandle) {
    no_replica_sets_and_both_services(handle).await;
    let (_, s) = expect(
        handle,
        Method::GET,
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop",
    )
    .await;
    respond(s, 200, ingress(json!({})));
}

/// The bodies a first reconcile sends: ReplicaSet, Ingress patch, status
/// patch, Event.
struct FirstReconcile {
    replica_set: Value,
    ingress: Value,
    status: Value,
    event: Value,
}

/// Plays the API server through the first reconcile of `rollout`.
async fn first_reconcile(rollout: Rollout) -> FirstReconcile {
    let (client, mut handle) = kube_mock::client();
    let ctx = context(client, true);
    let answer = rollout.clone();
    let server = tokio::spawn(async move {
        let handle = &mut handle;
        first_reads_with_ingress(handle).await;
        let path = "/apis/apps/v1/namespaces/shop/replicasets?";
        let (replica_set, s) = expect(handle, Method::POST, path).await;
        respond(s, 201, replica_set.clone());
        let path = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop?";
        let (ingress_patch, s) = expect(handle, Method::PATCH, path).await;
        respond(s, 200, ingress(json!({})));
        let path = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?";
        let (status, s) = expect(handle, Method::PATCH, path).await;
        respond(s, 200, serde_json::to_value(answer).unwrap());
        let path = "/apis/events.k8s.io/v1/namespaces/shop/events?";
        let (event, s) = expect(handle, Method::POST, path).await;
        respond(s, 201, event.clone());
        FirstReconcile {
            replica_set,
            ingress: ingress_patch,
            status,
            event,
        }
    });
    let action = reconcile(Arc::new(rollout), ctx).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    server.await.unwrap()
}

#[tokio::test]
async fn first_reconcile_creates_the_replica_set_and_sets_weights() {
    let sent = first_reconcile(rollout(json!({}))).await;

    // The first ReplicaSet: hash label on it, its selector and its pods; owned by the Rollout.
    let rs = sent.replica_set;
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
        sent.ingress,
        json!({"metadata": {"annotations": {
            "alb.ingress.kubernetes.io/actions.backend-service":
                r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"backend-service-canary","ServicePort":"80","Weight":0},{"ServiceName":"backend-service","ServicePort":"80","Weight":100}]}}"#,
            "gantry.dev/managed-alb-actions": "backend:alb.ingress.kubernetes.io/actions.backend-service"}}})
    );

    assert_eq!(sent.status["status"]["phase"], "Progressing");
    assert_eq!(sent.status["status"]["currentPodHash"], hash);
    assert_eq!(sent.status["status"]["observedGeneration"], 1);
    assert_eq!(sent.event["reason"], "RolloutProgressing");
}

/// A status field back at its default is sent as `null`: a merge patch that
/// left it out would keep the old value (the bug that skipped every pause
/// after the first promote). Fields that did not change are not sent.
#[tokio::test]
async fn the_status_patch_clears_what_the_decision_cleared() {
    let mut r = rollout(json!({}));
    r.status = Some(
        serde_json::from_value(json!({
            "controllerPause": true, "abort": true, "promoteFull": true,
            "abortedAt": "2026-01-01T00:00:00Z",
            "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
            "restartedAt": "2026-01-01T00:00:00Z"}))
        .unwrap(),
    );
    let status = &first_reconcile(r).await.status["status"];
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
    let (client, mut handle) = kube_mock::client();
    let ctx = context(client, false);
    reconcile(Arc::new(rollout(json!({}))), ctx).await.unwrap();
    // Nothing was sent: no request is waiting (the client may already be gone).
    let next =
        tokio::time::timeout(std::time::Duration::from_millis(50), handle.next_request()).await;
    assert!(
        matches!(next, Err(_) | Ok(None)),
        "a follower made a request"
    );
}

#[tokio::test]
async fn deleting_a_rollout_resets_the_weights_before_releasing_it() {
    let (client, mut handle) = kube_mock::client();
    let ctx = context(client, true);
    let deleted = rollout(json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}));
    let server = tokio::spawn(async move {
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop",
        )
        .await;
        respond(
            s,
            200,
            ingress(
                json!({"gantry.dev/managed-alb-actions": "backend:alb.ingress.kubernetes.io/actions.backend-service"}),
            ),
        );
        let (patch, s) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop?",
        )
        .await;
        let action =
            patch["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.backend-service"]
                .as_str()
                .unwrap();
        assert!(
            action.contains(r#""ServiceName":"backend-service","ServicePort":"80","Weight":100"#),
            "{action}"
        );
        respond(s, 200, ingress(json!({})));
        // Then the finalizer is removed (a JSON patch on the Rollout).
        let (patch, s) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend?",
        )
        .await;
        assert!(patch.to_string().contains("remove"), "{patch}");
        respond(s, 200, serde_json::to_value(rollout(json!({}))).unwrap());
    });
    reconcile(Arc::new(deleted), ctx).await.unwrap();
    server.await.unwrap();
}

/// A Rollout whose weights are set on a listener rule directly (no Ingress).
fn direct_rollout(extra_meta: Value) -> Rollout {
    let mut r = rollout(extra_meta);
    let alb = r
        .spec
        .strategy
        .canary
        .as_mut()
        .and_then(|c| c.traffic_routing.as_mut())
        .and_then(|t| t.alb.as_mut())
        .unwrap();
    alb.ingress.clear();
    alb.direct = Some(
        serde_json::from_value(json!({
            "ruleArn": "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/web/1/2/3",
            "stableTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1",
            "canaryTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/canary/2"
        }))
        .unwrap(),
    );
    r
}

#[tokio::test]
async fn direct_mode_reads_no_ingress_and_waits_for_the_elbv2_api() {
    let (client, mut handle) = kube_mock::client();
    let ctx = context(client, true);
    let server = tokio::spawn(async move {
        no_replica_sets_and_both_services(&mut handle).await;
        // Next is the ReplicaSet, not an Ingress.
        let (rs, s) = expect(
            &mut handle,
            Method::POST,
            "/apis/apps/v1/namespaces/shop/replicasets?",
        )
        .await;
        respond(s, 201, rs.clone());
        let (status, s) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?",
        )
        .await;
        assert_eq!(status["status"]["phase"], "Progressing");
        assert_eq!(
            status["status"]["alb"]["message"],
            "cannot verify the ALB weights: direct mode needs the ELBv2 API, which is not configured"
        );
        respond(
            s,
            200,
            serde_json::to_value(direct_rollout(json!({}))).unwrap(),
        );
        let (event, s) = expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/shop/events?",
        )
        .await;
        respond(s, 201, event.clone());
    });
    let action = reconcile(Arc::new(direct_rollout(json!({}))), ctx)
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(10))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn deleting_a_direct_mode_rollout_without_the_elbv2_api_touches_no_ingress() {
    let (client, mut handle) = kube_mock::client();
    let ctx = context(client, true);
    let deleted = direct_rollout(json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}));
    let server = tokio::spawn(async move {
        let (patch, s) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend?",
        )
        .await;
        assert!(patch.to_string().contains("remove"), "{patch}");
        respond(
            s,
            200,
            serde_json::to_value(direct_rollout(json!({}))).unwrap(),
        );
    });
    reconcile(Arc::new(deleted), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn leader_election_takes_free_or_expired_leases_only() {
    let (client, mut handle) = kube_mock::client();
    let elector = Elector::new(client, "gantry-system", "lock", "me");
    let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
    let lease = |holder: &str, renewed: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "lock", "namespace": "gantry-system", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 3}})
    };
    let server = tokio::spawn(async move {
        let path = "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases/lock";
        // No lease: create it.
        let (_, s) = expect(&mut handle, Method::GET, path).await;
        respond(
            s,
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
        let (created, s) = expect(
            &mut handle,
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases?",
        )
        .await;
        assert_eq!(created["spec"]["holderIdentity"], "me");
        respond(s, 201, created.clone());
        // Held by another replica and fresh: keep out.
        let (_, s) = expect(&mut handle, Method::GET, path).await;
        respond(s, 200, lease("other", "2026-01-01T00:00:50.000000Z"));
        // Held by another replica but expired: take over, with its resourceVersion.
        let (_, s) = expect(&mut handle, Method::GET, path).await;
        respond(s, 200, lease("other", "2026-01-01T00:00:30.000000Z"));
        let (replaced, s) = expect(&mut handle, Method::PUT, &format!("{path}?")).await;
        assert_eq!(replaced["metadata"]["resourceVersion"], "7");
        assert_eq!(replaced["spec"]["holderIdentity"], "me");
        assert_eq!(replaced["spec"]["leaseTransitions"], 4);
        respond(s, 200, replaced.clone());
        // Another replica won the same race: 409 means we lost.
        let (_, s) = expect(&mut handle, Method::GET, path).await;
        respond(s, 200, lease("other", "2026-01-01T00:00:30.000000Z"));
        let (_, s) = expect(&mut handle, Method::PUT, &format!("{path}?")).await;
        respond(
            s,
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"}),
        );
    });
    assert!(elector.try_acquire(now).await.unwrap());
    assert!(!elector.try_acquire(now).await.unwrap());
    assert!(elector.try_acquire(now).await.unwrap());
    assert!(!elector.try_acquire(now).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn pods_are_read_only_while_a_restart_is_pending_and_evicted_politely() {
    let (client, mut handle) = kube_mock::client();
    let mut restarting = rollout(json!({}));
    restarting.spec.restart_at = Some("2026-01-01T00:00:00Z".into());
    let plan = rollout_core::validate::validate(&restarting.spec).unwrap();
    let server = tokio::spawn(async move {
        first_reads_with_ingress(&mut handle).await;
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dbackend",
        )
        .await;
        respond(
            s,
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                {"metadata": {"name": "backend-aaa-1", "creationTimestamp": "2025-12-31T00:00:00Z",
                              "labels": {"app": "backend", "rollouts-pod-template-hash": "aaa"}}},
                {"metadata": {"name": "backend-aaa-2", "creationTimestamp": "2025-12-31T00:00:00Z",
                              "deletionTimestamp": "2026-01-01T00:00:01Z",
                              "labels": {"app": "backend", "rollouts-pod-template-hash": "aaa"}}}]}),
        );
        // Refused by a PodDisruptionBudget: not an error.
        let (body, s) = expect(
            &mut handle,
            Method::POST,
            "/api/v1/namespaces/shop/pods/backend-aaa-1/eviction?",
        )
        .await;
        assert_eq!(body["metadata"]["name"], "backend-aaa-1");
        respond(
            s,
            429,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                   "reason": "TooManyRequests", "message": "Cannot evict pod as it would violate the pod's disruption budget."}),
        );
    });
    let world = rollout_controller::reconcile::observe(&restarting, Some(&plan), "shop", &client)
        .await
        .unwrap();
    assert_eq!(world.pods.len(), 2);
    assert_eq!(world.pods[0].hash, "aaa");
    assert!(!world.pods[0].terminating && world.pods[1].terminating);
    rollout_controller::reconcile::evict_pod(&client, "shop", "backend-aaa-1")
        .await
        .unwrap();
    server.await.unwrap();
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
