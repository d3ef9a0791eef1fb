//! Branches and files: deleted, reset (force), read at a commit, and a
//! branch's head read through GraphQL.

use serde_json::{Value, json};

use super::{ApiError, GitHub, map_err};

impl GitHub {
    pub async fn delete_branch(&self, branch: &str) -> Result<(), ApiError> {
        let what = format!("delete branch {branch}");
        let response = self
            .rest
            ._delete(self.path(&format!("/git/refs/heads/{branch}")), None::<&()>)
            .await
            .map_err(self.fail(&what))?;
        octocrab::map_github_error(response)
            .await
            .map(|_| ())
            .map_err(self.fail(&what))
    }

    /// Points `branch` at `sha`, creating it or moving it (force).
    pub async fn reset_branch(&self, branch: &str, sha: &str) -> Result<(), ApiError> {
        let what = format!("point branch {branch} at {sha}");
        let moved: Result<Value, _> = self
            .rest
            .patch(
                self.path(&format!("/git/refs/heads/{branch}")),
                Some(&json!({ "sha": sha, "force": true })),
            )
            .await;
        match moved.map_err(self.fail(&what)) {
            Ok(_) => Ok(()),
            // GitHub answers 422 "Reference does not exist" for a missing branch.
            Err(e) if matches!(e.status, Some(404 | 422)) => {
                let created = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
                let _: Value = self.post(&what, "/git/refs", &created).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A file's text at a commit.
    pub async fn file_text(&self, path: &str, commit: &str) -> Result<String, ApiError> {
        let what = format!("read {path} at {}", &commit[..commit.len().min(12)]);
        let content: Value = self
            .rest
            .get(
                self.path(&format!("/contents/{path}")),
                Some(&[("ref", commit)]),
            )
            .await
            .map_err(|e| match map_err(&what, &self.repo, e) {
                e if e.status == Some(404) => {
                    ApiError::config(&what, "no such file at that commit")
                }
                e => e,
            })?;
        let encoded = match (content["type"].as_str(), content["encoding"].as_str()) {
            (Some("file"), Some("base64")) => content["content"].as_str().unwrap_or_default(),
            _ => {
                return Err(ApiError::config(
                    &what,
                    "GitHub did not answer with a file's content",
                ));
            }
        };
        use base64::Engine as _;
        let compact: String = encoded.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| ApiError::config(&what, format!("invalid base64 content: {e}")))?;
        String::from_utf8(bytes).map_err(|_| ApiError::config(&what, "the file is not valid UTF-8"))
    }

    /// The commit a branch points at, or None when there is no such branch.
    /// Read through GraphQL: REST's ref endpoint may be cached for a minute,
    /// which would turn every retry after a lost race into another loss.
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>, ApiError> {
        const QUERY: &str =
            "query GantryBranchHead($owner: String!, $name: String!, $ref: String!) {
  repository(owner: $owner, name: $name) { ref(qualifiedName: $ref) { target { oid } } }
}";
        let data = self
            .graphql(
                &format!("read branch {branch} of {}", self.repo),
                QUERY,
                json!({
                    "owner": self.repo.owner, "name": self.repo.name,
                    "ref": format!("refs/heads/{branch}"),
                }),
            )
            .await?;
        Ok(data["repository"]["ref"]["target"]["oid"]
            .as_str()
            .map(String::from))
    }
}
