//! The `rollout-controller` process on a fake API server (or any cluster),
//! its log kept: started off AWS, stopped with SIGTERM as the kubelet
//! stops it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary;
use crate::kube_fake::FakeApi;

pub struct Controller {
    pub child: Child,
    /// Every line printed, stdout and stderr, as it came.
    lines: Arc<Mutex<Vec<String>>>,
    pub port: u16,
}

impl Controller {
    pub fn start(api: &FakeApi, dir: &Path, port: u16, args: &[&str]) -> Controller {
        Controller::start_with(api, dir, port, args, &[])
    }

    /// With `env` set on top of an environment off AWS.
    pub fn start_with(
        api: &FakeApi,
        dir: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Controller {
        Controller::start_on(&api.kubeconfig(dir), dir, port, args, env)
    }

    /// On the cluster `kubeconfig` names.
    pub fn start_on(
        kubeconfig: &Path,
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
        .env("KUBECONFIG", kubeconfig)
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

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The JSON log records whose message contains `needle`.
    pub fn records(&self, needle: &str) -> Vec<Value> {
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

    pub fn wait_for(&self, needle: &str) -> Value {
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

    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
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
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        crate::sigterm(&self.child);
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
