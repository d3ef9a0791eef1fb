//! The `rollout-controller` process against a fake API server: what it
//! says and does when its CRDs are missing, its port is taken, its lease
//! namespace does not exist, it is stopped while leading, and off AWS.

use std::time::{Duration, Instant};

use gantry_tests::controller::Controller;
use gantry_tests::kube_fake;
use gantry_tests::{free_port, http_get};
use serde_json::Value;

fn level(record: &Value) -> &str {
    record["level"].as_str().unwrap_or_default()
}

#[test]
fn missing_crds_are_named_readyz_says_why_and_sigterm_ends_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _server) = kube_fake::start(false, &["default", "gantry-system"]);
    let mut c = Controller::start(&api, dir.path(), free_port(), &[]);
    let missing = c.wait_for("not installed");
    assert_eq!(level(&missing), "ERROR");
    assert!(
        missing["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("CustomResourceDefinition rollouts.gantry.dev and analysistemplates.gantry.dev not installed"),
        "{missing}"
    );
    let (code, why) = http_get(c.port, "/readyz");
    assert_eq!(code, 503);
    assert!(why.contains("rollouts.gantry.dev"), "{why}");
    assert_eq!(http_get(c.port, "/healthz"), (200, "ok".into()));

    let (status, took) = c.terminate();
    assert!(status.success(), "{status}\n{}", c.log().join("\n"));
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");

    // Off AWS: one INFO line about it, and no kilobyte-long SDK warnings.
    let aws: Vec<Value> = c.records("AWS");
    assert_eq!(aws.len(), 1, "{aws:?}");
    assert_eq!(
        aws[0]["fields"]["message"],
        "no AWS credentials found: ALB weight verification is off"
    );
    assert_eq!(level(&aws[0]), "INFO");
    let log = c.log();
    assert!(
        !log.iter().any(|l| l.contains("\"WARN\"")),
        "{}",
        log.join("\n")
    );
    assert!(log.iter().all(|l| l.len() < 600), "{}", log.join("\n"));
}

#[test]
fn a_taken_port_is_fatal_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _server) = kube_fake::start(true, &["default", "gantry-system"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut c = Controller::start(&api, dir.path(), port, &[]);
    let (status, took) = c
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running with its port taken:\n{}", c.log().join("\n")));
    assert_eq!(status.code(), Some(1), "{}", c.log().join("\n"));
    assert!(took < Duration::from_secs(3));
    let log = c.log().join("\n");
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{port} (--listen)"))
            && log.contains("in use"),
        "{log}"
    );
}

#[test]
fn a_stopped_leader_releases_its_lease_and_never_asks_aws() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _server) = kube_fake::start(true, &["default", "gantry-system"]);
    let mut c = Controller::start(
        &api,
        dir.path(),
        free_port(),
        &["--verify-alb-weights", "never"],
    );
    let led = c.wait_for("leadership changed");
    assert_eq!(led["fields"]["leading"], true, "{led}");
    let lease = api
        .lease("gantry-system", "gantry-rollout-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "test-1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, why) = http_get(c.port, "/readyz");
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready ({why}):\n{}",
            c.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, took) = c.terminate();
    assert!(status.success(), "{status}\n{}", c.log().join("\n"));
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    c.wait_for("leader lease released");
    let lease = api
        .lease("gantry-system", "gantry-rollout-controller")
        .unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);

    let aws: Vec<Value> = c.records("ALB weight");
    assert_eq!(aws.len(), 1);
    assert_eq!(
        aws[0]["fields"]["message"],
        "--verify-alb-weights never: ALB weight verification is off"
    );
    assert!(c.records("credentials").is_empty());
}

#[test]
fn a_missing_lease_namespace_is_named_once_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _server) = kube_fake::start(true, &["default"]);
    let mut c = Controller::start(&api, dir.path(), free_port(), &[]);
    let warning = c.wait_for("leader election failed");
    assert_eq!(level(&warning), "WARN");
    assert_eq!(
        warning["fields"]["error"],
        "the lease namespace \"gantry-system\" does not exist: create it, or name an existing one with --lease-namespace (POD_NAMESPACE)"
    );
    // Standbys retry every 500 ms; the same error is not repeated.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.records("leader election failed").len(), 1);
    let (status, _) = c.terminate();
    assert!(status.success());
}

#[test]
fn aws_credentials_turn_verification_on() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _server) = kube_fake::start(true, &["default", "gantry-system"]);
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let mut c = Controller::start_with(&api, dir.path(), free_port(), &[], &credentials);
    let line = c.wait_for("ALB weight");
    assert_eq!(
        line["fields"]["message"],
        "AWS credentials found: ALB weights are verified on the ELBv2 API"
    );
    assert!(!c.log().iter().any(|l| l.contains("secret")));
    let (status, _) = c.terminate();
    assert!(status.success());
}
