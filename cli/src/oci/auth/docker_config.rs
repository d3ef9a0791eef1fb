//! Logins for registries other than ECR, found where the rest of the tooling
//! keeps them: `GANTRY_REGISTRY_USERNAME`/`GANTRY_REGISTRY_PASSWORD`, or the
//! Docker config that `docker login` and `docker/login-action` write
//! (`auths`, `credHelpers`, `credsStore`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::oci::auth::{Login, Secret};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{path}: {what}")]
    Config { path: PathBuf, what: String },
    #[error("credential helper docker-credential-{helper}: {what}")]
    Helper { helper: String, what: String },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    auths: std::collections::HashMap<String, Auth>,
    #[serde(default)]
    cred_helpers: std::collections::HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct Auth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

pub fn login_for(host: &str) -> Result<Option<Login>, LoginError> {
    if let (Ok(username), Ok(password)) = (
        std::env::var("GANTRY_REGISTRY_USERNAME"),
        std::env::var("GANTRY_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(Login {
            username,
            password: Secret::new(password),
        }));
    }
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LoginError::Config {
                path,
                what: e.to_string(),
            });
        }
    };
    let config: Config = serde_json::from_str(&text).map_err(|e| LoginError::Config {
        path: path.clone(),
        what: format!("line {} column {}: {e}", e.line(), e.column()),
    })?;
    if let Some(helper) = config
        .cred_helpers
        .get(host)
        .or(config.creds_store.as_ref())
    {
        return helper_login(helper, host);
    }
    let entry = config.auths.iter().find_map(|(key, auth)| {
        let key_host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        (key_host == host).then_some(auth)
    });
    let Some(auth) = entry else { return Ok(None) };
    if let (Some(username), Some(password)) = (&auth.username, &auth.password) {
        return Ok(Some(Login {
            username: username.clone(),
            password: Secret::new(password.clone()),
        }));
    }
    let bad = || LoginError::Config {
        path: path.clone(),
        what: format!("auths.{host}.auth is not base64 of USER:PASSWORD"),
    };
    let Some(encoded) = &auth.auth else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(bad)?;
    let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Login {
        username: username.to_owned(),
        password: Secret::new(password),
    }))
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// Asks `docker-credential-<helper> get`, per the credential helper protocol.
fn helper_login(helper: &str, host: &str) -> Result<Option<Login>, LoginError> {
    let err = |what: String| LoginError::Helper {
        helper: helper.to_owned(),
        what,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(host.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stdout);
        // The protocol's answer for "nothing stored for this host".
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("exited with {}", out.status)));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer =
        serde_json::from_slice(&out.stdout).map_err(|_| err("sent an unreadable answer".into()))?;
    Ok(Some(Login {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}
