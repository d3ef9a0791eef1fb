//! `gantry rollout` against a mock API server: promote, abort, retry,
//! pause and resume send the spec and/or status merge patch the controller
//! reads (and nothing when the action makes no sense); status reads once or
//! follows a watch until the Rollout settles; list prints a table.

use gantry::rollout::cluster::{act, get_view, list, status};
use gantry_tests::kube_mock::{self, ApiHandle, expect, respond};
use http::Method;
use rollout_core::ops::{Op, State};
use serde_json::{Value, json};

const PATH: &str = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend";

fn rollout(paused: bool, status: Value) -> Value {
    json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "backend", "namespace": "shop"},
        "spec": {"paused": paused, "selector": {}, "template": {}, "strategy": {}},
        "status": status
    })
}

fn paused_at_step() -> Value {
    json!({"phase": "Paused", "stableRS": "aaa", "currentPodHash": "bbb", "stepDisplay": "2/4",
           "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}]})
}

/// Runs `op` while the mock answers the read with `current`, then checks
/// the patches that follow (`(subresource path suffix, body)`).
async fn scenario(
    op: Op,
    current: Value,
    writes: Vec<(&'static str, Value)>,
) -> anyhow::Result<String> {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let handle: &mut ApiHandle = &mut handle;
        let (_, s) = expect(handle, Method::GET, PATH).await;
        respond(s, 200, current.clone());
        for (suffix, body) in writes {
            let (patch, s) = expect(handle, Method::PATCH, &format!("{PATH}{suffix}?")).await;
            assert_eq!(patch, body);
            respond(s, 200, current.clone());
        }
    });
    let result = act(client, "shop", "backend", op).await;
    server.await.unwrap();
    result
}

#[tokio::test]
async fn promote_removes_the_pause_conditions() {
    let done = scenario(
        Op::Promote { full: false },
        rollout(false, paused_at_step()),
        vec![("/status", json!({"status": {"pauseConditions": null}}))],
    )
    .await
    .unwrap();
    assert_eq!(done, "rollout 'backend' promoted");
}

#[tokio::test]
async fn full_promote_of_a_paused_spec_unpauses_and_skips_the_steps() {
    let done = scenario(
        Op::Promote { full: true },
        rollout(true, paused_at_step()),
        vec![
            ("", json!({"spec": {"paused": false}})),
            (
                "/status",
                json!({"status": {"promoteFull": true, "pauseConditions": null}}),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(done, "rollout 'backend' fully promoted");
}

#[tokio::test]
async fn abort_retry_pause_and_resume() {
    scenario(
        Op::Abort,
        rollout(false, paused_at_step()),
        vec![("/status", json!({"status": {"abort": true}}))],
    )
    .await
    .unwrap();
    let mut aborted = paused_at_step();
    aborted["abort"] = json!(true);
    aborted["phase"] = json!("Degraded");
    scenario(
        Op::Retry,
        rollout(false, aborted),
        vec![("/status", json!({"status": {"abort": false}}))],
    )
    .await
    .unwrap();
    scenario(
        Op::Pause,
        rollout(false, paused_at_step()),
        vec![("", json!({"spec": {"paused": true}}))],
    )
    .await
    .unwrap();
    scenario(
        Op::Resume,
        rollout(true, paused_at_step()),
        vec![("", json!({"spec": {"paused": false}}))],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn restart_sets_restart_at() {
    let healthy = json!({"phase": "Healthy", "stableRS": "aaa", "currentPodHash": "aaa"});
    let at = "2026-01-01T12:00:00Z".parse().unwrap();
    let done = scenario(
        Op::Restart { at },
        rollout(false, healthy),
        vec![("", json!({"spec": {"restartAt": "2026-01-01T12:00:00Z"}}))],
    )
    .await
    .unwrap();
    assert_eq!(done, "rollout 'backend' restarting (one pod at a time)");
}

#[tokio::test]
async fn an_action_that_makes_no_sense_writes_nothing() {
    let healthy = json!({"phase": "Healthy", "stableRS": "aaa", "currentPodHash": "aaa"});
    let err = scenario(Op::Abort, rollout(false, healthy), vec![])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "backend has no canary in progress (Healthy): nothing to abort"
    );
}

#[tokio::test]
async fn a_missing_rollout_is_named() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, s) = expect(&mut handle, Method::GET, PATH).await;
        respond(
            s,
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                   "message": "rollouts.gantry.dev \"backend\" not found"}),
        );
    });
    let err = act(client, "shop", "backend", Op::Retry).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(
        err.to_string(),
        "Rollout backend not found in namespace shop"
    );
}

fn canary_status(phase: &str, step: &str, message: &str) -> Value {
    json!({"phase": phase, "stableRS": "aaa", "currentPodHash": "bbb", "stepDisplay": step,
           "message": message, "observedGeneration": 2})
}

fn with_generation(mut r: Value, generation: i64, version: &str) -> Value {
    r["metadata"]["generation"] = json!(generation);
    r["metadata"]["resourceVersion"] = json!(version);
    r
}

#[tokio::test]
async fn status_reports_once_without_watch() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, s) = expect(&mut handle, Method::GET, PATH).await;
        let status = canary_status("Paused", "2/4", "waiting for promote");
        respond(s, 200, with_generation(rollout(false, status), 2, "7"));
    });
    let mut out = Vec::new();
    let state = status(client, "shop", "backend", false, None, &mut out)
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(state, State::InProgress);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Paused at step 2/4: waiting for promote\n"
    );
}

#[tokio::test]
async fn status_watch_follows_changes_until_healthy() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        // The watcher lists the one Rollout, then watches from its version.
        let (request, send) = handle.next_request().await.unwrap();
        let uri = request.uri().to_string();
        assert!(
            uri.starts_with("/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts?")
                && uri.contains("fieldSelector=metadata.name%3Dbackend"),
            "{uri}"
        );
        let first = with_generation(
            rollout(false, canary_status("Progressing", "1/4", "")),
            2,
            "7",
        );
        respond(
            send,
            200,
            json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "RolloutList",
                   "metadata": {"resourceVersion": "7"}, "items": [first]}),
        );
        let (request, send) = handle.next_request().await.unwrap();
        let uri = request.uri().to_string();
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=7"),
            "{uri}"
        );
        let events: String = [
            rollout(false, canary_status("Paused", "2/4", "waiting for promote")),
            rollout(false, canary_status("Progressing", "3/4", "")),
            rollout(
                false,
                json!({"phase": "Healthy", "stableRS": "bbb", "currentPodHash": "bbb",
                                  "observedGeneration": 2}),
            ),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let object = with_generation(r, 2, &(8 + i).to_string());
            format!("{}\n", json!({"type": "MODIFIED", "object": object}))
        })
        .collect();
        send.send_response(
            http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(events.into_bytes()))
                .unwrap(),
        );
    });
    let mut out = Vec::new();
    let state = status(client, "shop", "backend", true, None, &mut out)
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(state, State::Healthy);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Progressing at step 1/4\nPaused at step 2/4: waiting for promote\nProgressing at step 3/4\nHealthy\n"
    );
}

#[tokio::test]
async fn list_is_a_table_and_says_when_there_is_nothing() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/apis/gantry.dev/v1alpha1/rollouts?",
        )
        .await;
        let mut web = rollout(false, canary_status("Paused", "2/4", "waiting for promote"));
        web["metadata"] = json!({"name": "web", "namespace": "shop", "generation": 2});
        web["status"]["canary"] = json!({"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}, "verified": false}});
        web["status"]["availableReplicas"] = json!(5);
        web["spec"]["replicas"] = json!(4);
        let mut api = rollout(false, json!({"phase": "Healthy", "observedGeneration": 1}));
        api["metadata"] = json!({"name": "api", "namespace": "payments", "generation": 1});
        respond(
            s,
            200,
            json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "RolloutList", "metadata": {}, "items": [api, web]}),
        );
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/apis/gantry.dev/v1alpha1/namespaces/empty/rollouts?",
        )
        .await;
        respond(
            s,
            200,
            json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "RolloutList", "metadata": {}, "items": []}),
        );
    });
    let all = list(client.clone(), None).await.unwrap();
    assert_eq!(
        all,
        "NAMESPACE  NAME  PHASE    STEP  CANARY            READY  MESSAGE\n\
         payments   api   Healthy  -     -                 0/1    Healthy\n\
         shop       web   Paused   2/4   20% (unverified)  5/4    Paused at step 2/4: waiting for promote\n"
    );
    assert_eq!(
        list(client, Some("empty")).await.unwrap(),
        "No Rollouts in namespace empty.\n"
    );
    server.await.unwrap();
}

/// A canary paused at step 2 of 3, with its ReplicaSets and events.
fn canary_world() -> (Value, Value, Value) {
    let mut r = rollout(
        false,
        json!({
            "phase": "Paused", "message": "waiting for promote", "stableRS": "aaa", "currentPodHash": "bbb",
            "stepDisplay": "2/3", "currentStepIndex": 1, "observedGeneration": 2,
            "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}, "verified": true}},
            "analysisRuns": [{"name": "background", "podTemplateHash": "bbb", "phase": "Running",
                "startedAt": "2026-01-01T00:00:00Z", "metrics": [{"name": "error-rate", "phase": "Running",
                "query": "q", "count": 2, "successful": 2, "failed": 0, "inconclusive": 0, "error": 0,
                "consecutiveError": 0, "measurements": [
                    {"phase": "Successful", "value": "[0.001]", "startedAt": "2026-01-01T00:09:00Z", "finishedAt": "2026-01-01T00:09:00Z"},
                    {"phase": "Successful", "value": "[0.002]", "startedAt": "2026-01-01T00:09:30Z", "finishedAt": "2026-01-01T00:09:30Z"}]}]}]
        }),
    );
    r["metadata"]["generation"] = json!(2);
    r["spec"] = json!({
        "replicas": 5, "selector": {"matchLabels": {"app": "backend"}},
        "template": {"metadata": {"labels": {"app": "backend"}},
                     "spec": {"containers": [{"name": "api", "image": "backend:2"}]}},
        "strategy": {"canary": {"canaryService": "c", "stableService": "s",
            "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}}
    });
    let rs = |hash: &str, replicas: i64, created: &str| {
        json!({
        "metadata": {"name": format!("backend-{hash}"), "labels": {"rollouts-pod-template-hash": hash},
                     "creationTimestamp": created},
        "spec": {"replicas": replicas, "selector": {}},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}})
    };
    let replica_sets = json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": [
        rs("aaa", 5, "2025-12-01T00:00:00Z"), rs("bbb", 1, "2026-01-01T00:00:00Z")]});
    let events = json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList", "metadata": {}, "items": [
        {"metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:05.000000Z", "type": "Normal",
         "reason": "RolloutProgressing", "note": "new template bbb", "reportingController": "gantry", "reportingInstance": "x", "action": "Update"},
        {"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:01:00.000000Z", "type": "Normal",
         "reason": "RolloutPaused", "note": "waiting for promote", "reportingController": "gantry", "reportingInstance": "x", "action": "Update"}]});
    (r, replica_sets, events)
}

#[test]
fn get_shows_steps_traffic_replica_sets_analysis_and_events() {
    let (r, rs, events) = canary_world();
    let view = gantry::rollout::view::View {
        rollout: serde_json::from_value(r).unwrap(),
        replica_sets: serde_json::from_value(rs["items"].clone()).unwrap(),
        events: serde_json::from_value(events["items"].clone()).unwrap(),
    };
    let now = "2026-01-01T00:10:00Z".parse().unwrap();
    assert_eq!(
        view.text(now),
        "\
Name:       backend
Namespace:  shop
Status:     Paused at step 2/3: waiting for promote
Traffic:    canary 20% / stable 80%, applied by the ALB (verified on AWS)
Images:     backend:2

Steps:
  ✔ 1. setWeight 20
  ► 2. pause until promoted
  · 3. setWeight 60

ReplicaSets:
  NAME                             ROLE    DESIRED READY AVAILABLE
  backend-bbb                      canary        1     1         1
  backend-aaa                      stable        5     5         5

Analysis background (Running):
  error-rate Running: 2 measured, 2 successful, 0 failed, 0 inconclusive, 0 errors
      1m ago  Successful   [0.001]
     30s ago  Successful   [0.002]

Events:
    9m ago  Normal   RolloutProgressing       new template bbb
    9m ago  Normal   RolloutPaused            waiting for promote
"
    );
}

#[test]
fn get_shows_a_basic_canarys_share_of_pods() {
    let (mut r, rs, _) = canary_world();
    r["status"]["canary"] = json!({});
    r["spec"]["strategy"]["canary"]["canaryService"] = json!("");
    r["spec"]["strategy"]["canary"]["stableService"] = json!("");
    let view = gantry::rollout::view::View {
        rollout: serde_json::from_value(r).unwrap(),
        replica_sets: serde_json::from_value(rs["items"].clone()).unwrap(),
        events: Vec::new(),
    };
    let text = view.text("2026-01-01T00:10:00Z".parse().unwrap());
    assert_eq!(
        text.lines().nth(3),
        Some("Traffic:    by pods (no traffic routing): canary 1 / stable 5 available"),
        "{text}"
    );
}

#[test]
fn get_shows_which_service_is_stable_with_ping_pong() {
    let (mut r, _, _) = canary_world();
    r["spec"]["strategy"]["canary"] = json!({
        "pingPong": {"pingService": "api-ping", "pongService": "api-pong"},
        "trafficRouting": {"alb": {"ingress": "api", "servicePort": 80, "rootService": "api"}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]});
    r["status"]["canary"]["stablePingPong"] = json!("ping");
    let view = gantry::rollout::view::View {
        rollout: serde_json::from_value(r).unwrap(),
        replica_sets: Vec::new(),
        events: Vec::new(),
    };
    let text = view.text("2026-01-01T00:10:00Z".parse().unwrap());
    assert_eq!(
        text.lines().nth(4),
        Some(
            "Services:   stable api-ping (ping), canary api-pong (pong) — pingPong swaps them at each promotion"
        ),
        "{text}"
    );
}

#[test]
fn get_shows_what_traffic_waits_for_at_the_alb() {
    let (mut r, _, _) = canary_world();
    let gate = "1 of 2 pods of backend-bbb healthy in c's target group";
    r["status"]["phase"] = json!("Progressing");
    r["status"]["message"] = json!(format!("canary at step 3/3: waiting for the ALB: {gate}"));
    r["status"]["trafficGates"] = json!([
        {"kind": "TargetsHealthy", "target": "c", "podTemplateHash": "bbb",
         "since": "2026-01-01T00:09:48Z", "message": gate},
        {"kind": "TargetsDrained", "target": "backend-old", "podTemplateHash": "old",
         "since": "2026-01-01T00:08:00Z",
         "message": "backend-old waits to scale down: 2 target(s) still registered or draining in s's target group"}]);
    let view = gantry::rollout::view::View {
        rollout: serde_json::from_value(r).unwrap(),
        replica_sets: Vec::new(),
        events: Vec::new(),
    };
    let text = view.text("2026-01-01T00:10:00Z".parse().unwrap());
    let head: Vec<&str> = text.lines().take(6).collect();
    assert_eq!(
        head,
        [
            "Name:       backend",
            "Namespace:  shop",
            &format!(
                "Status:     Progressing at step 2/3: canary at step 3/3: waiting for the ALB: {gate}"
            ),
            "Traffic:    canary 20% / stable 80%, applied by the ALB (verified on AWS)",
            &format!("Waiting:    {gate} (for 12s)"),
            "Waiting:    backend-old waits to scale down: 2 target(s) still registered or draining in s's target group (for 2m)",
        ]
    );
}

#[tokio::test]
async fn get_reads_the_rollout_its_replica_sets_and_events() {
    let (r, rs, events) = canary_world();
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, s) = expect(&mut handle, Method::GET, PATH).await;
        respond(s, 200, r);
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/apis/apps/v1/namespaces/shop/replicasets?&labelSelector=app%3Dbackend",
        )
        .await;
        respond(s, 200, rs);
        let (_, s) = expect(
            &mut handle,
            Method::GET,
            "/apis/events.k8s.io/v1/namespaces/shop/events?&fieldSelector=regarding.kind%3DRollout%2Cregarding.name%3Dbackend",
        )
        .await;
        respond(s, 200, events);
    });
    let mut out = Vec::new();
    get_view(client, "shop", "backend", false, true, &mut out)
        .await
        .unwrap();
    server.await.unwrap();
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["rollout"]["status"]["stepDisplay"], "2/3");
    assert_eq!(json["replicaSets"].as_array().unwrap().len(), 2);
    assert_eq!(json["events"][1]["reason"], "RolloutPaused");
}
