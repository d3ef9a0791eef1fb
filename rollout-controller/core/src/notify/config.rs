//! Destinations, from the `gantry-notifications` ConfigMap: one key per
//! destination, `destination.<name>`, holding YAML:
//!
//! ```yaml
//! destination.team-slack: |
//!   slack: {url: $slack-url}        # `$key`: from the Secret of the same name
//!   triggers: [aborted, analysis-failed]   # for every Rollout
//! destination.audit: |
//!   webhook:
//!     url: https://audit.example.com/rollouts
//!     headers: {X-Team: payments}
//!     hmacSecret: $audit-hmac       # signs the body: X-Gantry-Signature-256
//! ```
//!
//! Rollouts subscribe with annotations
//! `notifications.gantry.dev/subscribe.<trigger>.<destination>` (value
//! `"false"` opts out of a destination-wide trigger).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Trigger;

pub const KEY_PREFIX: &str = "destination.";
pub const SUBSCRIBE_PREFIX: &str = "notifications.gantry.dev/subscribe.";

/// A setting given in the ConfigMap, or a key of the Secret (`$key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Literal(String),
    Secret(String),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.strip_prefix('$') {
            Some(key) => Value::Secret(key.to_string()),
            None => Value::Literal(text),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    pub url: Value,
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// HMAC-SHA256 key: the body's signature goes in `X-Gantry-Signature-256`.
    #[serde(default)]
    pub hmac_secret: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    pub url: Value,
}

/// Where messages go, and how they are shaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Webhook(Webhook),
    Slack(Url),
    Teams(Url),
    GoogleChat(Url),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    webhook: Option<Webhook>,
    slack: Option<Url>,
    teams: Option<Url>,
    google_chat: Option<Url>,
    #[serde(default)]
    triggers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    pub kind: Kind,
    /// Sent for every Rollout the controller manages.
    pub triggers: BTreeSet<Trigger>,
}

/// Every destination in the ConfigMap's `data`, and what is wrong with the
/// others (each naming the ConfigMap, key, line and what was expected).
pub fn parse(configmap: &str, data: &BTreeMap<String, String>) -> (Vec<Destination>, Vec<String>) {
    let mut destinations = Vec::new();
    let mut problems = Vec::new();
    for (key, text) in data {
        let Some(name) = key.strip_prefix(KEY_PREFIX) else {
            problems.push(format!(
                "ConfigMap {configmap}, key {key}: not a destination (keys are `{KEY_PREFIX}<name>`)"
            ));
            continue;
        };
        match destination(name, text) {
            Ok(d) => destinations.push(d),
            Err(e) => problems.push(format!("ConfigMap {configmap}, key {key}: {e}")),
        }
    }
    (destinations, problems)
}

fn destination(name: &str, text: &str) -> Result<Destination, String> {
    let spec: Spec = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let kinds = [
        spec.webhook.map(Kind::Webhook),
        spec.slack.map(Kind::Slack),
        spec.teams.map(Kind::Teams),
        spec.google_chat.map(Kind::GoogleChat),
    ];
    let mut kinds = kinds.into_iter().flatten();
    let (Some(kind), None) = (kinds.next(), kinds.next()) else {
        return Err("expected exactly one of webhook, slack, teams, googleChat".into());
    };
    let triggers = spec
        .triggers
        .iter()
        .map(|t| {
            Trigger::parse(t).ok_or_else(|| {
                format!(
                    "triggers: unknown trigger {t:?} (expected one of {})",
                    Trigger::names()
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Destination {
        name: name.to_string(),
        kind,
        triggers,
    })
}

/// Who hears what about one Rollout: each destination's own triggers, plus
/// the Rollout's subscribe annotations, minus those set to `"false"`.
/// Annotations naming an unknown trigger or destination are returned as
/// problems.
pub fn subscriptions(
    annotations: &BTreeMap<String, String>,
    destinations: &[Destination],
) -> (BTreeSet<(Trigger, String)>, Vec<String>) {
    let mut subscribed: BTreeSet<(Trigger, String)> = destinations
        .iter()
        .flat_map(|d| d.triggers.iter().map(|t| (*t, d.name.clone())))
        .collect();
    let mut problems = Vec::new();
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(SUBSCRIBE_PREFIX) else {
            continue;
        };
        let parsed = rest
            .split_once('.')
            .and_then(|(t, d)| Some((Trigger::parse(t)?, d)));
        let Some((trigger, name)) = parsed else {
            problems.push(format!(
                "annotation {key}: expected {SUBSCRIBE_PREFIX}<trigger>.<destination>, trigger one of {}",
                Trigger::names()
            ));
            continue;
        };
        if !destinations.iter().any(|d| d.name == name) {
            problems.push(format!(
                "annotation {key}: no destination {name:?} in the notifications ConfigMap"
            ));
            continue;
        }
        let entry = (trigger, name.to_string());
        if value.trim() == "false" {
            subscribed.remove(&entry);
        } else {
            subscribed.insert(entry);
        }
    }
    (subscribed, problems)
}

/// A value with `$key`s read from the Secret's data.
pub fn resolve(
    value: &Value,
    secret: &BTreeMap<String, String>,
    secret_name: &str,
) -> Result<String, String> {
    match value {
        Value::Literal(v) => Ok(v.clone()),
        Value::Secret(key) => secret
            .get(key)
            .cloned()
            .ok_or_else(|| format!("${key}: no key {key:?} in Secret {secret_name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn destinations_and_their_problems() {
        let (found, problems) = parse(
            "gantry-notifications",
            &data(&[
                (
                    "destination.audit",
                    "webhook:\n  url: https://a.example/x\n  headers: {X-Team: pay}\n  hmacSecret: $audit-hmac\ntriggers: [completed]\n",
                ),
                ("destination.chat", "slack: {url: $slack-url}\n"),
                ("destination.two", "slack: {url: x}\nteams: {url: y}\n"),
                (
                    "destination.typo",
                    "webhook: {url: x}\ntriggers: [finished]\n",
                ),
                ("destination.bad", "webhook:\n  url: x\n  method: PUT\n"),
                ("slack", "url: x"),
            ]),
        );
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["audit", "chat"]);
        let Kind::Webhook(hook) = &found[0].kind else {
            panic!()
        };
        assert_eq!(hook.hmac_secret, Some(Value::Secret("audit-hmac".into())));
        assert_eq!(hook.headers["X-Team"], Value::Literal("pay".into()));
        assert_eq!(found[0].triggers, BTreeSet::from([Trigger::Completed]));
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("ConfigMap gantry-notifications, key destination.bad: webhook: unknown field `method`"), "{}", problems[0]);
        assert!(problems[0].contains("line 3"), "{}", problems[0]);
        assert!(problems[1].ends_with("expected exactly one of webhook, slack, teams, googleChat"));
        assert!(problems[2].contains("unknown trigger \"finished\""));
        assert!(problems[3].contains("key slack: not a destination"));
    }

    #[test]
    fn annotations_add_and_remove_subscriptions() {
        let (destinations, _) = parse(
            "n",
            &data(&[
                (
                    "destination.audit",
                    "webhook: {url: x}\ntriggers: [completed, aborted]\n",
                ),
                ("destination.chat", "slack: {url: y}\n"),
            ]),
        );
        let annotations = data(&[
            ("notifications.gantry.dev/subscribe.paused.chat", ""),
            ("notifications.gantry.dev/subscribe.aborted.audit", "false"),
            ("notifications.gantry.dev/subscribe.paused.nowhere", ""),
            ("notifications.gantry.dev/subscribe.done.chat", ""),
            ("unrelated", "x"),
        ]);
        let (subscribed, problems) = subscriptions(&annotations, &destinations);
        assert_eq!(
            subscribed,
            BTreeSet::from([
                (Trigger::Paused, "chat".into()),
                (Trigger::Completed, "audit".into())
            ])
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn secret_values() {
        let secret = data(&[("k", "v")]);
        assert_eq!(
            resolve(&Value::Secret("k".into()), &secret, "s"),
            Ok("v".into())
        );
        assert_eq!(
            resolve(&Value::Literal("$".into()), &secret, "s").unwrap(),
            "$"
        );
        assert!(
            resolve(&Value::Secret("x".into()), &secret, "s")
                .unwrap_err()
                .contains("Secret s")
        );
    }
}
