//! Image specs as `kustomize edit set image` takes them, and the `images:`
//! entries they produce.
//!
//! The semantics follow kustomize v5 exactly: a spec *replaces* the entry of
//! the same name, and only the fields given as `*` are carried over from the
//! existing entry. So `app:1.2` on an entry that had a `newName` drops the
//! `newName`, as kustomize does.

use std::fmt;

/// The kustomize placeholder meaning "keep the existing value of this field".
const PRESERVE: &str = "*";

/// One entry of a kustomization's `images:` list. Empty strings are treated
/// as absent, as kustomize's `omitempty` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageEntry {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageEntry {
    /// The reference this entry makes a container use, e.g. `repo/app:1.2@sha256:…`.
    pub fn reference(&self) -> String {
        let mut s = self.new_name.clone().unwrap_or_else(|| self.name.clone());
        if let Some(tag) = &self.new_tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

/// A field of a spec: a new value, "keep the existing one" (`*`), or not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Set(String),
    Preserve,
    Unset,
}

impl Field {
    fn resolve(&self, existing: Option<&String>) -> Option<String> {
        match self {
            Field::Set(v) => Some(v.clone()),
            Field::Preserve => existing.cloned(),
            Field::Unset => None,
        }
    }
}

/// A parsed `--image` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub new_name: Field,
    pub new_tag: Field,
    pub digest: Field,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image spec {spec:?}: {reason}")]
pub struct SpecError {
    pub spec: String,
    pub reason: String,
}

const FORMS: &str = "expected one of name=newName:tag, name=newName@digest, \
name=newName:tag@digest, name=newName, name:tag, name:tag@digest, name@digest";

impl ImageSpec {
    /// Parses a spec the way `kustomize edit set image` does, then validates
    /// every part against the OCI reference grammar so that a typo fails here
    /// rather than in the cluster.
    pub fn parse(arg: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError {
            spec: arg.to_string(),
            reason,
        };
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (Some(k), v),
            None => (None, arg),
        };
        let (name, tag, digest) = split_image(value);
        if key.is_none() && tag.is_none() && digest.is_none() {
            return Err(err(format!("no tag or digest given; {FORMS}")));
        }
        let (name, new_name) = match key {
            Some(k) => (k, Some(name)),
            None => (name, None),
        };
        validate_name(name).map_err(|r| err(format!("image name {name:?}: {r}")))?;
        // Each part is absent, `*` (keep), or a value that must be valid.
        let field =
            |part: Option<&str>, what: &str, valid: fn(&str) -> Result<(), String>| match part {
                None => Ok(Field::Unset),
                Some(PRESERVE) => Ok(Field::Preserve),
                Some(v) => valid(v)
                    .map(|()| Field::Set(v.to_string()))
                    .map_err(|r| err(format!("{what} {v:?}: {r}"))),
            };
        let new_name = field(new_name, "new name", validate_name)?;
        let new_tag = field(tag, "tag", validate_tag)?;
        let digest = field(digest, "digest", validate_digest)?;
        Ok(ImageSpec {
            name: name.to_string(),
            new_name,
            new_tag,
            digest,
        })
    }

    /// The entry kustomize writes for this spec, given the existing entry of
    /// the same name (if any).
    pub fn apply(&self, existing: Option<&ImageEntry>) -> ImageEntry {
        let old = |f: fn(&ImageEntry) -> Option<&String>| existing.and_then(f);
        ImageEntry {
            name: self.name.clone(),
            new_name: self.new_name.resolve(old(|e| e.new_name.as_ref())),
            new_tag: self.new_tag.resolve(old(|e| e.new_tag.as_ref())),
            digest: self.digest.resolve(old(|e| e.digest.as_ref())),
        }
    }
}

impl fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn show(field: &Field) -> Option<&str> {
            match field {
                Field::Set(v) => Some(v),
                Field::Preserve => Some(PRESERVE),
                Field::Unset => None,
            }
        }
        f.write_str(&self.name)?;
        if let Some(n) = show(&self.new_name) {
            write!(f, "={n}")?;
        }
        if let Some(t) = show(&self.new_tag) {
            write!(f, ":{t}")?;
        }
        if let Some(d) = show(&self.digest) {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits `[host[:port]/]path[:tag][@digest]` into its parts. As in kustomize,
/// a `:` before the first `/` belongs to the host, not to a tag.
fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let search_from = image.find('/').filter(|&i| i > 0).unwrap_or(0);
    let rest = &image[search_from..];
    let at = rest.find('@').map(|i| i + search_from);
    let colon = rest.find(':').map(|i| i + search_from);
    match (colon, at) {
        (None, None) => (image, None, None),
        (Some(c), Some(a)) if c < a => (&image[..c], Some(&image[c + 1..a]), Some(&image[a + 1..])),
        (_, Some(a)) => (&image[..a], None, Some(&image[a + 1..])),
        (Some(c), None) => (&image[..c], Some(&image[c + 1..]), None),
    }
}

/// `[host[:port]/]component(/component)*` per the OCI distribution reference
/// grammar: lowercase path components separated by `.`, `_`, `__` or `-`s.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let has_host = parts.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()));
    if has_host {
        validate_host(first)?;
        parts.remove(0);
    }
    for part in parts {
        validate_path_component(part)?;
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), String> {
    let (domain, port) = match host.rsplit_once(':') {
        Some((d, p)) => (d, Some(p)),
        None => (host, None),
    };
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !domain.split('.').all(ok_label) {
        return Err(format!("registry host {host:?} is not a valid host name"));
    }
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("registry port {p:?} is not a number"));
    }
    Ok(())
}

fn validate_path_component(part: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bad = || {
        Err(format!(
            "path component {part:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or '-'"
        ))
    };
    if part.is_empty() || !part.starts_with(alnum) || !part.ends_with(alnum) {
        return bad();
    }
    let mut separator = String::new();
    for c in part.chars() {
        if alnum(c) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|s| s == '-');
            if !ok {
                return bad();
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return bad();
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` per the OCI distribution spec.
fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() || tag.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !tag.starts_with(word) || !tag.chars().all(|c| word(c) || c == '.' || c == '-') {
        return Err(
            "may contain only letters, digits, '_', '.' and '-', and not start with '.' or '-'"
                .into(),
        );
    }
    Ok(())
}

/// `algorithm:encoded`; the registered algorithms are checked for length.
fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err("expected algorithm:hex, e.g. sha256:<64 hex digits>".into());
    };
    let hex_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    match hex_len {
        Some(n) if encoded.len() == n && encoded.chars().all(lower_hex) => Ok(()),
        Some(n) => Err(format!("{algorithm} digests are {n} lowercase hex digits")),
        None if !algorithm.is_empty()
            && algorithm
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !encoded.is_empty()
            && encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c)) =>
        {
            Ok(())
        }
        None => Err("expected algorithm:encoded, e.g. sha256:<64 hex digits>".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3";

    fn set(s: &str) -> Field {
        Field::Set(s.into())
    }

    #[test]
    fn parses_every_kustomize_form() {
        let cases = [
            (
                "app=repo/app:1.2",
                "app",
                set("repo/app"),
                set("1.2"),
                Field::Unset,
            ),
            (
                "app=repo/app@D",
                "app",
                set("repo/app"),
                Field::Unset,
                set(D),
            ),
            (
                "app=repo/app:1.2@D",
                "app",
                set("repo/app"),
                set("1.2"),
                set(D),
            ),
            (
                "app=repo/app",
                "app",
                set("repo/app"),
                Field::Unset,
                Field::Unset,
            ),
            ("app:1.2", "app", Field::Unset, set("1.2"), Field::Unset),
            ("app:1.2@D", "app", Field::Unset, set("1.2"), set(D)),
            ("app@D", "app", Field::Unset, Field::Unset, set(D)),
            (
                "app=*:1.2",
                "app",
                Field::Preserve,
                set("1.2"),
                Field::Unset,
            ),
            ("app:*@D", "app", Field::Unset, Field::Preserve, set(D)),
            (
                "app=repo/app:1.2@*",
                "app",
                set("repo/app"),
                set("1.2"),
                Field::Preserve,
            ),
            (
                "localhost:5000/team/app:v1",
                "localhost:5000/team/app",
                Field::Unset,
                set("v1"),
                Field::Unset,
            ),
            (
                "app=123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:sha-abc",
                "app",
                set("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"),
                set("sha-abc"),
                Field::Unset,
            ),
        ];
        for (arg, name, new_name, new_tag, digest) in cases {
            let arg = arg.replace('D', D);
            let spec = ImageSpec::parse(&arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            assert_eq!(
                spec,
                ImageSpec {
                    name: name.into(),
                    new_name,
                    new_tag,
                    digest
                },
                "{arg}"
            );
            assert_eq!(spec.to_string(), arg, "round trip");
        }
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        let cases = [
            ("app", "no tag or digest"),
            ("App:1", "path component \"App\""),
            ("app:", "tag \"\""),
            ("app:-x", "not start with"),
            ("app@sha256:abc", "64 lowercase hex"),
            ("app@md5", "expected algorithm:hex"),
            ("app=", "new name \"\": must not be empty"),
            ("app=repo//x:1", "path component \"\""),
            ("app=bad host:1/x:1", "not a valid host name"),
            ("app:1 2", "tag"),
        ];
        for (arg, want) in cases {
            let err = ImageSpec::parse(arg).expect_err(arg).to_string();
            assert!(err.contains(want), "{arg}: {err}");
        }
    }

    #[test]
    fn apply_follows_kustomize_replacement_semantics() {
        let existing = ImageEntry {
            name: "app".into(),
            new_name: Some("repo/app".into()),
            new_tag: Some("1.0".into()),
            digest: Some(D.into()),
        };
        // A bare tag replaces the whole entry: newName and digest are dropped.
        let e = ImageSpec::parse("app:2.0").unwrap().apply(Some(&existing));
        assert_eq!(e.new_name, None);
        assert_eq!(e.new_tag.as_deref(), Some("2.0"));
        assert_eq!(e.digest, None);
        // `*` keeps the existing value.
        let e = ImageSpec::parse("app=*:2.0@*")
            .unwrap()
            .apply(Some(&existing));
        assert_eq!(e.new_name.as_deref(), Some("repo/app"));
        assert_eq!(e.digest.as_deref(), Some(D));
        // `*` with nothing to keep is dropped.
        let e = ImageSpec::parse("app=*:2.0").unwrap().apply(None);
        assert_eq!(e.new_name, None);
        assert_eq!(e.reference(), "app:2.0");
    }
}
