//! Where an image goes: a repository and its tags, as the distribution
//! spec spells them.

use std::fmt;

/// A repository in a registry, e.g. `127.0.0.1:5000/team/app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub host: String,
    pub path: String,
}

impl Repository {
    /// Parses `host[:port]/path`. The host is required: a bare name is an ECR
    /// repository, which the ECR module resolves.
    pub fn parse(s: &str) -> Result<Repository, String> {
        let bad = |why: &str| format!("{s:?} is not a repository reference: {why}");
        if s.contains('@') {
            return Err(bad("give a repository without a digest; tags go in --tag"));
        }
        let (host, path) = s.split_once('/').ok_or_else(|| bad("expected HOST/PATH"))?;
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Err(bad("give a repository without a tag; tags go in --tag"));
        }
        let path_ok = path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        });
        if !path_ok {
            return Err(bad(
                "path components are lowercase letters, digits and . _ - separators",
            ));
        }
        Ok(Repository {
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// A tag as the distribution spec allows it.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a valid tag: up to 128 of [A-Za-z0-9_.-], not starting with . or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repositories() {
        let r = Repository::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        for bad in [
            "app",
            "host/App",
            "host/app:1",
            "host/app@sha256:00",
            "host//a",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_tags() {
        assert!(check_tag("v1.2.3-rc.1_x").is_ok());
        for bad in ["", ".x", "-x", "a/b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
