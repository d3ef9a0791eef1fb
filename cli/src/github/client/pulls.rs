//! Pull requests: listed, opened, updated, labelled, reviewers requested,
//! commented on, set to auto-merge.

use serde_json::{Value, json};

use super::{ApiError, GitHub, NewPr, PullRequest};

impl GitHub {
    /// Open pull requests into `base`, optionally only those from `head` (a
    /// branch of this repository).
    pub async fn open_pulls(
        &self,
        base: &str,
        head: Option<&str>,
    ) -> Result<Vec<PullRequest>, ApiError> {
        let mut query = vec![
            ("state", "open".to_string()),
            ("base", base.to_string()),
            ("per_page", "100".to_string()),
        ];
        if let Some(head) = head {
            query.push(("head", format!("{}:{head}", self.repo.owner)));
        }
        let what = format!("list the open pull requests into {base} of {}", self.repo);
        let mut all = Vec::new();
        for page in 1.. {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            let batch: Vec<PullRequest> = self
                .rest
                .get(self.path("/pulls"), Some(&q))
                .await
                .map_err(self.fail(&what))?;
            let full = batch.len() == 100;
            all.extend(batch);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    pub async fn create_pull(&self, pr: &NewPr<'_>) -> Result<PullRequest, ApiError> {
        let body = json!({
            "title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base,
            "draft": pr.draft, "maintainer_can_modify": true,
        });
        let what = format!("open a pull request from {} into {}", pr.head, pr.base);
        self.post(&what, "/pulls", &body).await
    }

    /// Sets fields of a pull request (title, body, state).
    pub async fn update_pull(&self, number: u64, fields: &Value) -> Result<PullRequest, ApiError> {
        self.rest
            .patch(self.path(&format!("/pulls/{number}")), Some(fields))
            .await
            .map_err(self.fail(&format!("update pull request #{number}")))
    }

    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), ApiError> {
        let _: Value = self
            .post(
                &format!("label pull request #{number}"),
                &format!("/issues/{number}/labels"),
                &json!({ "labels": labels }),
            )
            .await?;
        Ok(())
    }

    /// Requests reviews: `user` or `org/team` (a team of the owner's organisation).
    pub async fn request_reviewers(&self, number: u64, who: &[String]) -> Result<(), ApiError> {
        let (teams, users): (Vec<&String>, Vec<&String>) =
            who.iter().partition(|r| r.contains('/'));
        let teams: Vec<&str> = teams
            .iter()
            .map(|t| t.split_once('/').map_or(t.as_str(), |(_, slug)| slug))
            .collect();
        let _: Value = self
            .post(
                &format!("request reviews on pull request #{number}"),
                &format!("/pulls/{number}/requested_reviewers"),
                &json!({ "reviewers": users, "team_reviewers": teams }),
            )
            .await?;
        Ok(())
    }

    pub async fn comment(&self, number: u64, body: &str) -> Result<(), ApiError> {
        let _: Value = self
            .post(
                &format!("comment on pull request #{number}"),
                &format!("/issues/{number}/comments"),
                &json!({ "body": body }),
            )
            .await?;
        Ok(())
    }

    /// Turns on auto-merge with `method` (MERGE, SQUASH or REBASE).
    pub async fn enable_auto_merge(&self, pr: &PullRequest, method: &str) -> Result<(), ApiError> {
        const MUTATION: &str = "mutation GantryAutoMerge($pr: ID!, $method: PullRequestMergeMethod!) {
  enablePullRequestAutoMerge(input: { pullRequestId: $pr, mergeMethod: $method }) { clientMutationId }
}";
        self.graphql(
            &format!("enable auto-merge on pull request #{}", pr.number),
            MUTATION,
            json!({ "pr": pr.node_id, "method": method }),
        )
        .await
        .map(|_| ())
    }
}
