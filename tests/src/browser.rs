//! A real browser for page tests: Debian's headless Chromium, driven
//! through chromedriver (WebDriver) with fantoccini.

use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{free_port, wait_for_port, which};

/// chromedriver on a free loopback port; stopped on drop.
pub struct Chromedriver {
    child: Child,
    port: u16,
    /// Each session's Chromium profile is a folder of its own in here.
    profiles: tempfile::TempDir,
    sessions: std::sync::atomic::AtomicUsize,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        let driver = which("chromedriver")
            .expect("chromedriver is not installed: run tests/setup (Debian chromium-driver)");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port, "chromedriver");
        Chromedriver {
            child,
            port,
            profiles: tempfile::tempdir().unwrap(),
            sessions: Default::default(),
        }
    }

    /// A new headless Chromium session, `width`×`height`. The flags keep
    /// it off the network (this machine has none) and out of the sandbox
    /// (tests run as root).
    pub async fn session(&self, width: u32, height: u32) -> Client {
        let n = self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.path().join(n.to_string());
        let chromium = which("chromium").expect("chromium is not installed: run tests/setup");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
