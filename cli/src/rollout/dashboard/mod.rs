//! `gantry rollout dashboard`: a local web page of the Rollouts in a
//! namespace (or all), live from one shared set of watches, with the
//! `gantry rollout` operations as buttons. Runs with the user's kubeconfig;
//! nothing is installed in the cluster.
//!
//! - `hub`: the watches and what they hold; `history`: weights and
//!   measurements over time;
//! - `page`, `chart`: HTML and SVG, pure; `actions`: the buttons;
//! - `server`: HTTP routes, the CSRF and Host checks, the event streams.

mod actions;
mod chart;
mod history;
mod hub;
mod page;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};

pub struct Options {
    pub address: IpAddr,
    pub port: u16,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// Open the page in the default browser.
    pub open: bool,
}

/// Serves until interrupted (Ctrl-C).
pub async fn serve(client: kube::Client, options: Options) -> Result<()> {
    if !options.address.is_loopback() {
        eprintln!(
            "warning: the dashboard listens on {}: anyone who can reach it acts on the cluster \
             with your credentials (the CSRF token guards the buttons, nothing guards reading)",
            options.address
        );
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(options.address, options.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", options.address, options.port))?;
    let bound = listener.local_addr()?;
    let hosts = if options.address.is_loopback() {
        let port = bound.port();
        vec![bound.to_string(), format!("localhost:{port}")]
    } else {
        Vec::new()
    };
    let app = Arc::new(server::App {
        hub: hub::Hub::start(client, options.namespace),
        csrf: csrf_token()?,
        hosts,
    });
    let url = format!("http://{bound}/");
    println!("Dashboard: {url}  (Ctrl-C stops it)");
    if options.open {
        open(&url);
    }
    axum::serve(listener, server::router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the dashboard's server failed")
}

/// 32 random bytes, hex: a new token each time the dashboard starts.
fn csrf_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("cannot read random bytes for the CSRF token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Opens `url` with the desktop's opener; says so when there is none.
fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("cannot open a browser ({opener}: {e}): open {url} yourself");
    }
}
