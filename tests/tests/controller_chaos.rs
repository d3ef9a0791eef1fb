//! The `rollout-controller` process under faults, on the fake API server
//! reached through a relay that can be cut: an API server outage of 20 s,
//! watches dropped, ended and expired, writes refused (429 with
//! Retry-After, 503) and conflicting with a second writer, slow answers,
//! the lease taken by another identity, and SIGKILL at every step. Each
//! ends with the canary where it should be, having written nothing from a
//! stale cache (every write is conditional; the fake records those it
//! refused), moved no weight backwards and sent no notification twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gantry_tests::canary::{
    PAUSES, ROLLOUTS, Receiver, cluster, controller, controller_via, release, wait, wait_phase,
};
use gantry_tests::controller::Controller;
use gantry_tests::http_get;
use gantry_tests::kube_fake::FakeApi;
use gantry_tests::outage::Outage;
use http::Method;
use k8s_openapi::jiff::Timestamp;
use rollout_core::ops::{Op, patches};
use serde_json::{Value, json};

const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/backend?";
const STATUS: &str = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?";
const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
const TRIGGERS: &str = "[rollout-started, step-completed, paused, completed]";
/// Four weights, each held 2 s.
const TIMED: &str = r#"[{"setWeight": 20}, {"pause": {"duration": "2s"}},
    {"setWeight": 40}, {"pause": {"duration": "2s"}}, {"setWeight": 60}, {"pause": {"duration": "2s"}},
    {"setWeight": 80}, {"pause": {"duration": "2s"}}]"#;

fn status(api: &FakeApi) -> Value {
    api.get(ROLLOUTS, "shop", "backend").unwrap()["status"].clone()
}

fn step(api: &FakeApi) -> i64 {
    status(api)["currentStepIndex"].as_i64().unwrap_or(-1)
}

/// The canary's weight in an Ingress as written (its forward action).
fn canary_weight(ingress: &Value) -> Option<i32> {
    let action =
        ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.backend"].as_str()?;
    rollout_core::alb::parse_action(action)
        .ok()?
        .weight_of("backend-canary")
}

fn weight_now(api: &FakeApi) -> Option<i32> {
    canary_weight(&api.get("apis/networking.k8s.io/v1/ingresses", "shop", "backend")?)
}

/// What the controller wrote over HTTP (the test's own writes go to the
/// store directly), kept across calls.
#[derive(Default)]
struct Written(Vec<(Method, String, Value)>);

impl Written {
    fn take(&mut self, api: &FakeApi) -> &[(Method, String, Value)] {
        self.0.extend(api.take_writes());
        &self.0
    }

    /// Every canary weight written to the Ingress, in order.
    fn weights(&mut self, api: &FakeApi) -> Vec<i32> {
        self.take(api)
            .iter()
            .filter(|(_, path, _)| path == INGRESS)
            .filter_map(|(_, _, body)| canary_weight(body))
            .collect()
    }

    /// Every step index written to the status, in order.
    fn steps(&mut self, api: &FakeApi) -> Vec<i64> {
        self.take(api)
            .iter()
            .filter(|(_, path, _)| path == STATUS)
            .filter_map(|(_, _, body)| body["status"]["currentStepIndex"].as_i64())
            .collect()
    }
}

/// Weights up to the last step never go down (the final 0 is the canary
/// becoming stable); steps never go back.
fn assert_forward(written: &mut Written, api: &FakeApi) {
    let weights = written.weights(api);
    let rising = weights.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1);
    assert!(
        weights[..rising].windows(2).all(|w| w[0] <= w[1]),
        "a weight moved back: {weights:?}"
    );
    let steps = written.steps(api);
    assert!(
        steps.windows(2).all(|s| s[0] <= s[1]),
        "a step went back: {steps:?}"
    );
}

/// No notification was sent twice: each (event, step) once.
fn assert_sent_once(receiver: &Receiver) {
    let mut seen = BTreeSet::new();
    for r in receiver.got().iter().filter(|r| r.path == "/audit") {
        let key = (
            r.header("x-gantry-event").to_string(),
            r.header("x-gantry-delivery").to_string(),
        );
        assert!(seen.insert(key.clone()), "sent twice: {key:?}");
    }
}

/// The stale writes the fake refused, none but the Rollout status after a
/// second writer's (`allowed` of them); and how many were conditional.
fn assert_no_stale_write(api: &FakeApi, allowed: usize) -> u64 {
    let (stale, conditional) = api.stale_writes();
    let not_status: Vec<_> = stale
        .iter()
        .filter(|s| s.key.0 != ROLLOUTS || s.key.2 != "backend")
        .collect();
    assert!(
        not_status.is_empty(),
        "written from a stale cache: {not_status:?}"
    );
    assert!(stale.len() <= allowed, "stale status writes: {stale:?}");
    assert!(conditional > 0, "no write was conditional");
    conditional
}

/// A canary taking `steps`, its first release completed, the controller
/// reaching the fake through a relay that can be cut.
struct Relayed {
    receiver: Receiver,
    api: FakeApi,
    relay: Outage,
    controller: Controller,
    _dir: tempfile::TempDir,
}

impl Relayed {
    fn deployed(steps: &str) -> Relayed {
        let receiver = Receiver::start(0, false);
        let api = cluster(&receiver, TRIGGERS, json!({}), steps);
        let relay = Outage::start(api.port);
        let dir = tempfile::tempdir().unwrap();
        let controller = controller_via(&api, relay.port, dir.path(), &[]);
        receiver.wait_for("/audit", "completed");
        // What the first release wrote is not looked at.
        api.take_writes();
        Relayed {
            receiver,
            api,
            relay,
            controller,
            _dir: dir,
        }
    }
}

/// Waits for the new release's first weight on the Ingress.
fn first_weight(api: &FakeApi, weight: i32) {
    wait("the canary's first weight", || {
        (weight_now(api) == Some(weight)).then_some(())
    });
}

/// `gantry rollout promote`'s status patch.
fn promote(api: &FakeApi) {
    let rollout = serde_json::from_value(api.get(ROLLOUTS, "shop", "backend").unwrap()).unwrap();
    let patches = patches(Op::Promote { full: false }, &rollout).unwrap();
    let status = patches.status.expect("promote patches the status");
    api.patch_status(ROLLOUTS, "shop", "backend", &status);
}

/// The pod template hash the Rollout runs now.
fn running(api: &FakeApi) -> String {
    status(api)["currentPodHash"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Healthy on a release other than `before`'s.
fn completed_after(api: &FakeApi, before: &str) -> bool {
    let s = status(api);
    s["phase"] == "Healthy" && s["stableRS"] == s["currentPodHash"] && s["currentPodHash"] != before
}

fn metric(controller: &Controller, name: &str) -> Option<String> {
    let (_, metrics) = http_get(controller.port, "/metrics");
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .map(str::to_string)
}

#[test]
fn an_api_server_outage_of_20_s_is_recovered_from_in_seconds() {
    let steps =
        r#"[{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 50}, {"pause": {}}]"#;
    // Bound so that the controller stops first, the directory goes last.
    let Relayed {
        _dir,
        receiver,
        api,
        relay,
        controller,
    } = Relayed::deployed(steps);
    let mut written = Written::default();

    let before = running(&api);
    release(&api, "shop/backend:1.1.0");
    first_weight(&api, 25);
    wait("the timed pause", || (step(&api) == 1).then_some(()));
    relay.cut();
    // Compacted meanwhile: a watch resumed from before gets 410 Gone.
    api.compact();
    let down = Instant::now();
    let cut_at = Timestamp::now();
    let readyz = wait("/readyz naming the watches down", || {
        let (code, why) = http_get(controller.port, "/readyz");
        (code == 503 && why.contains("down")).then_some(why)
    });
    println!("during the outage, /readyz: {readyz}");
    wait("the rollouts watch's metric at 0", || {
        let up = metric(
            &controller,
            "gantry_rollout_controller_watch_up{watch=\"rollouts\"}",
        );
        up.filter(|l| l.ends_with(" 0"))
    });
    while down.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(step(&api), 1, "nothing moved while the API server was away");

    relay.restore();
    let back = Instant::now();
    while weight_now(&api) != Some(50) {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no next step 30 s after the outage:\n{}",
            controller.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let next_step = back.elapsed();
    wait_phase(&api, ("Paused", "3/4"));
    promote(&api);
    let promoted = Instant::now();
    wait("the canary completed", || {
        completed_after(&api, &before).then_some(())
    });
    let completed = promoted.elapsed();
    println!(
        "API server back → next step's weight written: {:.1} s; promote → completed: {:.1} s",
        next_step.as_secs_f64(),
        completed.as_secs_f64()
    );
    assert!(
        next_step <= Duration::from_secs(5),
        "{next_step:?} from the API server answering again to the next step\n{}",
        controller.log().join("\n")
    );
    assert!(completed <= Duration::from_secs(5), "{completed:?}");
    // The leader stopped before its lease (15 s) could have been taken.
    let stepped_down = controller
        .records("leadership changed")
        .into_iter()
        .find(|r| r["fields"]["leading"] == false)
        .expect("stepped down during the outage");
    let at: Timestamp = stepped_down["timestamp"].as_str().unwrap().parse().unwrap();
    let after = at.duration_since(cut_at).as_secs_f64();
    println!("stopped leading {after:.1} s into the outage (lease: 15 s)");
    assert!((7.5..15.0).contains(&after), "{after}");
    let conditional = assert_no_stale_write(&api, 0);
    println!("{conditional} conditional writes, none from a stale cache");
    assert_forward(&mut written, &api);
    assert_sent_once(&receiver);
}

#[test]
fn dropped_ended_expired_refused_conflicting_and_slow_the_canary_completes() {
    // Bound so that the controller stops first, the directory goes last.
    let Relayed {
        _dir,
        receiver,
        api,
        relay,
        controller,
    } = Relayed::deployed(TIMED);
    let mut written = Written::default();

    let before = running(&api);
    release(&api, "shop/backend:1.1.0");
    let started = Instant::now();
    first_weight(&api, 20);
    let pace = Duration::from_millis(1500);
    // Connections dropped mid-watch.
    relay.drop_connections();
    std::thread::sleep(pace);
    // Watch streams end without an error, and their resume gets 410.
    api.compact();
    api.end_watches();
    std::thread::sleep(pace);
    // The next writes refused by an overloaded server.
    api.refuse_writes(&[(429, Some(1)), (503, None), (429, Some(1))]);
    std::thread::sleep(pace);
    // A second writer on the status, just before the controller's next
    // status write, which was based on the version before: 409.
    let second = json!({"status": {"message": "written by a second writer"}});
    api.interpose_status_write(STATUS.trim_end_matches('?'), second);
    std::thread::sleep(pace);
    // Every answer takes 2 s for a while.
    api.slow_down(Duration::from_secs(2));
    std::thread::sleep(4 * pace);
    api.slow_down(Duration::ZERO);
    wait("the canary completed", || {
        completed_after(&api, &before).then_some(())
    });
    println!(
        "canary of 4 × 2 s pauses completed in {:.1} s under faults",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(api.refusals_left(), 0, "every 429 and 503 answered");
    let (stale, _) = api.stale_writes();
    assert_eq!(stale.len(), 1, "the second writer's conflict: {stale:?}");
    assert_no_stale_write(&api, 1);
    assert_forward(&mut written, &api);
    assert_eq!(written.weights(&api).last(), Some(&0));
    assert_sent_once(&receiver);
    let log = controller.log().join("\n");
    assert!(log.contains("watch down"), "{log}");
}

#[test]
fn a_lease_taken_by_another_identity_stops_every_write_until_it_is_back() {
    let receiver = Receiver::start(0, false);
    let api = cluster(&receiver, TRIGGERS, json!({}), PAUSES);
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(&api, dir.path(), &[]);
    receiver.wait_for("/audit", "completed");
    release(&api, "shop/backend:1.1.0");
    wait_phase(&api, ("Paused", "1/4"));

    let take = |holder: &str| {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let spec = json!({"spec": {"holderIdentity": holder, "renewTime": now, "leaseDurationSeconds": 15}});
        api.merge_patch(LEASES, "gantry-system", "gantry-rollout-controller", &spec);
    };
    take("intruder");
    let taken = Instant::now();
    // Within a renew period it knows; then a promotion is not acted on.
    wait("the controller stepping down", || {
        let log = controller.log().join("\n");
        log.contains("\"leading\":false").then_some(())
    });
    let noticed = taken.elapsed();
    api.take_writes();
    promote(&api);
    for _ in 0..4 {
        take("intruder");
        std::thread::sleep(Duration::from_secs(1));
    }
    let writes: Vec<_> = api
        .take_writes()
        .into_iter()
        .filter(|(_, path, _)| !path.contains("/leases/"))
        .collect();
    assert!(
        writes.is_empty(),
        "written while another held the lease: {writes:?}"
    );
    assert_eq!(step(&api), 1);

    // Released by the other: taken back at once, every watch listed
    // anew, and the canary goes on.
    take("");
    wait_phase(&api, ("Paused", "3/4"));
    controller.wait_for("leading again: every watch lists anew");
    println!(
        "lease taken by another identity noticed in {:.1} s",
        noticed.as_secs_f64()
    );
    assert!(noticed <= Duration::from_secs(3), "{noticed:?}");
}

#[test]
fn sigkill_at_every_step_resumes_where_the_status_says() {
    let receiver = Receiver::start(0, false);
    let api = cluster(&receiver, TRIGGERS, json!({}), TIMED);
    let dir = tempfile::tempdir().unwrap();
    let mut process = controller(&api, dir.path(), &[]);
    receiver.wait_for("/audit", "completed");
    // What the first release wrote is not looked at.
    api.take_writes();
    let mut written = Written::default();
    // The first release's last step, until the new one starts.
    let mut last = step(&api);
    let before = running(&api);
    release(&api, "shop/backend:1.1.0");
    let mut killed_at = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !completed_after(&api, &before) {
        assert!(Instant::now() < deadline, "not completed: {}", status(&api));
        let now = step(&api);
        if now != last {
            process.child.kill().unwrap(); // SIGKILL
            process.child.wait().unwrap();
            killed_at.push(now);
            last = now;
            process = controller(&api, dir.path(), &[]);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let steps: BTreeSet<i64> = written.steps(&api).into_iter().collect();
    println!("killed with SIGKILL at steps {killed_at:?}; steps written {steps:?}");
    assert!(killed_at.len() >= 7, "{killed_at:?}");
    assert_no_stale_write(&api, 0);
    assert_forward(&mut written, &api);
    assert_sent_once(&receiver);
}
