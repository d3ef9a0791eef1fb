//! Notifications from the `rollout-controller` process on the fake API
//! server to a real HTTP receiver on loopback: webhook bodies signed with
//! HMAC-SHA256 and Slack Block Kit messages, as the Rollout moves; a 500
//! retried; nothing sent twice across a restart; secrets never logged; a
//! receiver that does not answer neither holds the rollout back nor grows
//! the queue past its capacity (the rest dropped and counted).

use std::time::Duration;

use gantry_tests::canary::{
    HMAC_KEY, PAUSES, ROLLOUTS, Received, Receiver, SLACK_PATH, cluster, controller, release, wait,
    wait_phase,
};
use gantry_tests::http_get;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use sha2::Sha256;

fn verify_signature(r: &Received) {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(&r.body);
    let hex = r
        .header("x-gantry-signature-256")
        .strip_prefix("sha256=")
        .expect("signed");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    mac.verify_slice(&bytes)
        .expect("the signature matches the body");
}

#[test]
fn notifications_reach_the_receivers_once_signed_and_retried() {
    let receiver = Receiver::start(1, false);
    let api = cluster(
        &receiver,
        "[rollout-started, paused, completed]",
        json!({"notifications.gantry.dev/subscribe.aborted.chat": "",
               "notifications.gantry.dev/subscribe.paused.chat": ""}),
        PAUSES,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut first = controller(&api, dir.path(), &[]);

    // The first deploy completes; the receiver's first answer is a 500.
    let attempts = wait("a second attempt after the 500", || {
        let attempts = receiver.events("/audit", "completed");
        (attempts.len() >= 2).then_some(attempts)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        receiver.events("/audit", "completed").len(),
        2,
        "retried once, then accepted"
    );
    let completed = attempts[1].clone();
    assert_eq!(attempts[0].body, attempts[1].body, "the same message again");
    let body = completed.json();
    assert_eq!(body["rollout"], "backend");
    assert_eq!(body["namespace"], "shop");
    assert_eq!(body["images"], json!(["shop/backend:1.0.0"]));
    assert_eq!(completed.header("x-team"), "payments");
    assert_eq!(completed.header("content-type"), "application/json");
    verify_signature(&completed);

    release(&api, "shop/backend:1.1.0");
    wait_phase(&api, ("Paused", "1/4"));
    let started = receiver.wait_for("/audit", "rollout-started");
    let paused = receiver.wait_for("/audit", "paused");
    for r in [&started, &paused] {
        verify_signature(r);
        assert_eq!(r.json()["images"], json!(["shop/backend:1.1.0"]));
    }
    assert_eq!(paused.json()["step"], "1/4");
    assert_eq!(paused.json()["canaryWeight"], 20);
    assert!(
        paused.json()["summary"]
            .as_str()
            .unwrap()
            .starts_with("paused at step 2 of 4: pause until promoted")
    );
    let slack = receiver.wait_for(SLACK_PATH, "paused").json();
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        ":double_vertical_bar: Rollout shop/backend: paused"
    );
    assert_eq!(
        slack["blocks"][2]["fields"][1]["text"],
        "*Canary weight*\n20%"
    );
    assert!(
        receiver.events("/audit", "step-completed").is_empty(),
        "not subscribed"
    );

    // `gantry rollout abort`'s patch.
    api.patch_status(
        ROLLOUTS,
        "shop",
        "backend",
        &json!({"status": {"abort": true}}),
    );
    let aborted = receiver.wait_for(SLACK_PATH, "aborted").json();
    assert!(
        aborted["text"]
            .as_str()
            .unwrap()
            .contains("aborted: all traffic back on stable"),
        "{aborted}"
    );
    assert!(
        receiver.events("/audit", "aborted").is_empty(),
        "audit does not subscribe to aborts"
    );
    let recorded = api.get(ROLLOUTS, "shop", "backend").unwrap()["status"]["notified"].clone();
    let recorded: Vec<&str> = recorded
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let kinds: Vec<&str> = recorded
        .iter()
        .map(|k| k.split('/').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "rollout-started",
            "step-completed",
            "paused",
            "aborted",
            "degraded"
        ],
        "{recorded:?}"
    );

    // Latency: from the reconcile that saw each occurrence to the receiver.
    let mut latencies: Vec<f64> = receiver
        .got()
        .iter()
        .filter(|r| r.path == "/audit")
        .map(|r| {
            let seen: Timestamp = r.json()["time"].as_str().unwrap().parse().unwrap();
            r.at.duration_since(seen).as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "notification latency (ms, event seen → receiver, incl. one retry after 1 s): {latencies:?}"
    );

    // A new controller process sends nothing again.
    let before = receiver.got().len();
    first.terminate();
    let log: String = first.log().join("\n");
    let second = controller(&api, dir.path(), &[]);
    wait("the new leader reconciling", || {
        let (_, metrics) = http_get(second.port, "/metrics");
        metrics
            .contains("reconcile_duration_seconds_count")
            .then_some(())
            .filter(|_| !metrics.contains("reconcile_duration_seconds_count 0"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.got().len(),
        before,
        "sent again after a restart: {:?}",
        receiver.summary()
    );
    let log = log + &second.log().join("\n");
    for secret in [HMAC_KEY, "token-never-logged"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[test]
fn a_receiver_that_does_not_answer_holds_nothing_back() {
    let receiver = Receiver::start(0, true);
    let api = cluster(
        &receiver,
        "[rollout-started, step-completed, paused, completed]",
        json!({}),
        PAUSES,
    );
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(&api, dir.path(), &["--notifications-capacity", "1"]);
    receiver.wait_for("/audit", "completed");
    release(&api, "shop/backend:1.1.0");
    wait_phase(&api, ("Paused", "1/4"));
    assert_eq!(
        receiver.answered(),
        0,
        "the canary reached its pause while the receiver held every answer"
    );
    let dropped = wait("the dropped notifications counted", || {
        let (_, metrics) = http_get(controller.port, "/metrics");
        metrics
            .lines()
            .find(|l| l.starts_with("gantry_rollout_controller_notifications_dropped_total{destination=\"audit\",reason=\"queue_full\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
            .filter(|n| *n == 3)
    });
    assert_eq!(
        dropped, 3,
        "rollout-started, step-completed/1 and paused: one pending is the capacity"
    );
    receiver.state.1.send_replace(false);
    wait("the held delivery answered and counted", || {
        let (_, metrics) = http_get(controller.port, "/metrics");
        metrics
            .contains("gantry_rollout_controller_notifications_sent_total{destination=\"audit\",trigger=\"completed\"} 1")
            .then_some(())
    });
}
