//! Which objects a list or watch asks for: the collection, a namespace,
//! label and field selectors (the forms controllers use: `key`, `!key`,
//! `key=value`, `key!=value`; `metadata.name=` and `metadata.namespace=`).

use serde_json::Value;

use super::store::Key;

pub struct Query {
    pub collection: String,
    /// None: every namespace.
    pub namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<(String, String)>,
}

enum Requirement {
    Exists(String),
    Absent(String),
    Equals(String, String),
    Differs(String, String),
}

impl Query {
    pub fn new(
        collection: String,
        namespace: Option<String>,
        params: &[(String, String)],
    ) -> Query {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let labels = param("labelSelector")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(requirement)
            .collect();
        let fields = param("fieldSelector")
            .split(',')
            .filter_map(|s| s.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query {
            collection,
            namespace,
            labels,
            fields,
        }
    }

    pub fn matches(&self, key: &Key, object: &Value) -> bool {
        if key.0 != self.collection || self.namespace.as_ref().is_some_and(|ns| *ns != key.1) {
            return false;
        }
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
            Requirement::Equals(k, v) => label(k) == Some(v),
            Requirement::Differs(k, v) => label(k) != Some(v),
        });
        labels_match
            && self
                .fields
                .iter()
                .all(|(field, value)| match field.as_str() {
                    "metadata.name" => key.2 == *value,
                    "metadata.namespace" => key.1 == *value,
                    _ => true,
                })
    }
}

fn requirement(s: &str) -> Requirement {
    if let Some((k, v)) = s.split_once("!=") {
        Requirement::Differs(k.to_string(), v.to_string())
    } else if let Some((k, v)) = s.split_once('=') {
        Requirement::Equals(k.to_string(), v.trim_start_matches('=').to_string())
    } else if let Some(k) = s.strip_prefix('!') {
        Requirement::Absent(k.to_string())
    } else {
        Requirement::Exists(s.to_string())
    }
}

/// The query string's parameters, percent-decoded.
pub fn params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
