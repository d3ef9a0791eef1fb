//! The `rollout-controller` process against a fake API server: what it
//! says and does when its CRDs are missing, its port is taken, its lease
//! namespace does not exist, it is stopped while leading, and off AWS.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gantry_tests::kube_fake::{self, FakeApi};
use gantry_tests::{binary, free_port, http_get};
use serde_json::Value;

struct Controller {
    child: Child,
    /// Every line printed, stdout and stderr, as it came.
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Controller {
    fn start(api: &FakeApi, dir: &Path, port: u16, args: &[&str]) -> Controller {
        Controller::start_with(api, dir, port, args, &[])
    }

    /// With `env` set on top of an environment off AWS.
    fn start_with(
        api: &FakeApi,
        dir: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Controller {
        let mut cmd = Command::new(binary("rollout-controller"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--identity",
            "test-1",
        ])
        .args(args)
        .env("KUBECONFIG", api.kubeconfig(dir))
        // Off AWS, and nothing sent to the instance metadata address.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // No ~/.aws either.
        .env("HOME", dir)
        .env("AWS_REGION", "eu-west-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_ENDPOINT_URL",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "RUST_LOG",
            "POD_NAMESPACE",
            "POD_NAME",
            "WATCH_NAMESPACE",
            "VERIFY_ALB_WEIGHTS",
            "LOG_FORMAT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("start rollout-controller");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Controller { child, lines, port }
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The JSON log records whose message contains `needle`.
    fn records(&self, needle: &str) -> Vec<Value> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["fields"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(needle)
            })
            .collect()
    }

    fn wait_for(&self, needle: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self.records(needle).into_iter().next() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, as the kubelet sends it; the exit status and how long it took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        gantry_tests::sigterm(&self.child);
        self.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
            panic!(
                "still running 15 s after SIGTERM:\n{}",
                self.log().join("\n")
            )
        })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
