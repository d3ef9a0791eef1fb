//! GraphQL, and the commit GitHub makes and signs: `createCommitOnBranch`.

use serde_json::{Value, json};

use super::{ApiCommit, ApiError, GitHub};

impl GitHub {
    pub(super) async fn graphql(
        &self,
        what: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, ApiError> {
        let answer: Value = self
            .graphql
            .post(
                "/graphql",
                Some(&json!({ "query": query, "variables": variables })),
            )
            .await
            .map_err(self.fail(what))?;
        if let Some(first) = answer["errors"].as_array().and_then(|e| e.first()) {
            let messages: Vec<&str> = answer["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["message"].as_str())
                .collect();
            return Err(ApiError {
                what: what.to_string(),
                status: None,
                kind: first["type"].as_str().map(String::from),
                detail: messages.join("; "),
            });
        }
        Ok(answer["data"].clone())
    }

    /// Commits file contents onto `branch` if it still points at
    /// `expected_head` (else the error [`ApiError::is_stale_head`]).
    /// GitHub signs the commit.
    pub async fn create_commit_on_branch(
        &self,
        branch: &str,
        expected_head: &str,
        message: &str,
        files: &[(String, String)],
    ) -> Result<ApiCommit, ApiError> {
        const MUTATION: &str = "mutation GantryCommit($input: CreateCommitOnBranchInput!) {
  createCommitOnBranch(input: $input) { commit { oid url } }
}";
        use base64::Engine as _;
        let (headline, body) = message.split_once('\n').unwrap_or((message, ""));
        let additions: Vec<Value> = files
            .iter()
            .map(|(path, text)| {
                json!({
                    "path": path,
                    "contents": base64::engine::general_purpose::STANDARD.encode(text),
                })
            })
            .collect();
        let input = json!({
            "branch": {
                "repositoryNameWithOwner": self.repo.to_string(),
                "branchName": branch,
            },
            "message": { "headline": headline.trim(), "body": body.trim() },
            "fileChanges": { "additions": additions },
            "expectedHeadOid": expected_head,
        });
        let data = self
            .graphql(
                &format!("commit to {branch} of {} through the API", self.repo),
                MUTATION,
                json!({ "input": input }),
            )
            .await?;
        let commit = &data["createCommitOnBranch"]["commit"];
        match (commit["oid"].as_str(), commit["url"].as_str()) {
            (Some(oid), Some(url)) => Ok(ApiCommit {
                oid: oid.to_string(),
                url: url.to_string(),
            }),
            _ => Err(ApiError::config(
                "createCommitOnBranch",
                "GitHub's answer has no commit",
            )),
        }
    }
}
