//! Registry auth: a `WWW-Authenticate` challenge answered with Basic
//! credentials from the keychain, or a Bearer token from the realm.

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};

use crate::oci::auth::{Login, Secret};
use crate::oci::error::RegistryError;

use super::{Client, header_str};

impl Client {
    /// Answers a `WWW-Authenticate` challenge: Basic with the login, or a
    /// Bearer token from the realm, scoped to this repository.
    pub(super) async fn authenticate(
        &self,
        op: &str,
        headers: &HeaderMap,
    ) -> Result<(), RegistryError> {
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            detail: Some(detail.to_owned()),
        };
        let challenge = header_str(headers, WWW_AUTHENTICATE.as_str())
            .and_then(Challenge::parse)
            .ok_or_else(|| {
                unauthorized("the registry sent no usable WWW-Authenticate challenge")
            })?;
        let login = self.login.login().await?;
        let header = match challenge.scheme.as_str() {
            "basic" => {
                let login =
                    login.ok_or_else(|| unauthorized("it requires a login and none was found"))?;
                basic(&login)
            }
            "bearer" => self.bearer_token(op, &challenge, login.as_ref()).await?,
            other => return Err(unauthorized(&format!("unsupported auth scheme {other:?}"))),
        };
        *self.authorization.lock().expect("lock") = Some(header);
        Ok(())
    }

    async fn bearer_token(
        &self,
        op: &str,
        challenge: &Challenge,
        login: Option<&Login>,
    ) -> Result<Secret, RegistryError> {
        let realm = challenge
            .param("realm")
            .and_then(|r| Url::parse(r).ok())
            .ok_or_else(|| RegistryError::Protocol(format!("{op}: token realm is not a URL")))?;
        let mut url = realm;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", &format!("repository:{}:pull,push", self.repo.path));
        }
        let mut request = self.http.get(url);
        if let Some(login) = login {
            request = request.header(AUTHORIZATION, basic(login).expose());
        }
        let resp = request.send().await.map_err(|e| self.transport(op, e))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Unauthorized {
                op: op.to_owned(),
                host: self.repo.host.clone(),
                detail: Some(format!("the token service answered {}", resp.status())),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = resp
            .json()
            .await
            .map_err(|e| RegistryError::Protocol(format!("{op}: unreadable token: {e}")))?;
        let token = token.token.or(token.access_token).ok_or_else(|| {
            RegistryError::Protocol(format!("{op}: the token service sent no token"))
        })?;
        Ok(Secret::new(format!("Bearer {token}")))
    }
}

fn basic(login: &Login) -> Secret {
    let raw = format!("{}:{}", login.username, login.password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let mut params = Vec::new();
        let mut chars = rest.trim().chars().peekable();
        loop {
            while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
            let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
            if key.is_empty() || chars.next() != Some('=') {
                break;
            }
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            }
            params.push((key.trim().to_ascii_lowercase(), value));
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("basic-realm"))
        );
    }

    #[test]
    pub(super) fn secrets_do_not_print() {
        let login = Login {
            username: "AWS".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
        assert!(!format!("{:?}", basic(&login)).contains("aHVudGVy"));
    }
}
