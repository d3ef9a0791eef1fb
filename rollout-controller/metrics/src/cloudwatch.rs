//! `provider.cloudWatch`: CloudWatch's GetMetricData over the last
//! `interval`, every page read; the result is Argo's list of
//! MetricDataResults (`result[0].Values`).

use std::time::SystemTime;

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{self as cw, ScanBy, StandardUnit};

use rollout_core::analysis::{CloudWatch, MetricDataResult, QueryValue};
use rollout_core::types::MetricDataQuery;

use crate::Client;

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("CloudWatch GetMetricData failed: {0}")]
    Api(String),
}

impl Client {
    pub(crate) async fn metric_data(&self, c: &CloudWatch) -> Result<QueryValue, CloudWatchError> {
        let queries: Vec<cw::MetricDataQuery> = c.queries.iter().map(sdk_query).collect();
        let end = SystemTime::now();
        let start = end - c.interval;
        let client = self.cloudwatch().await;
        let mut results: Vec<MetricDataResult> = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| CloudWatchError::Api(DisplayErrorContext(&e).to_string()))?;
            for r in page.metric_data_results() {
                merge(&mut results, r);
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(QueryValue::MetricData(results))
    }
}

/// Adds one page's result for a query to what earlier pages gave it.
fn merge(results: &mut Vec<MetricDataResult>, r: &cw::MetricDataResult) {
    let id = r.id().unwrap_or_default();
    let index = match results.iter().position(|x| x.id == id) {
        Some(i) => i,
        None => {
            results.push(MetricDataResult {
                id: id.to_string(),
                label: r.label().unwrap_or_default().to_string(),
                ..Default::default()
            });
            results.len() - 1
        }
    };
    let into = &mut results[index];
    into.timestamps
        .extend(r.timestamps().iter().map(|t| t.to_string()));
    into.values.extend_from_slice(r.values());
    into.status_code = r
        .status_code()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
}

fn sdk_query(q: &MetricDataQuery) -> cw::MetricDataQuery {
    let stat = match &q.metric_stat {
        None => None,
        Some(s) => {
            let dimensions = s
                .metric
                .dimensions
                .iter()
                .map(|d| {
                    cw::Dimension::builder()
                        .name(&d.name)
                        .value(&d.value)
                        .build()
                })
                .collect();
            let metric = cw::Metric::builder()
                .namespace(&s.metric.namespace)
                .metric_name(&s.metric.metric_name)
                .set_dimensions(Some(dimensions))
                .build();
            let stat = cw::MetricStat::builder()
                .metric(metric)
                .period(s.period)
                .stat(&s.stat)
                .set_unit(s.unit.as_deref().map(StandardUnit::from))
                .build();
            Some(stat)
        }
    };
    cw::MetricDataQuery::builder()
        .id(&q.id)
        .set_expression(q.expression.clone())
        .set_metric_stat(stat)
        .set_label(q.label.clone())
        .set_period(q.period)
        .set_return_data(q.return_data)
        .build()
}
