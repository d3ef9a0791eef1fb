//! The Kubernetes client: kube's default stack behind a token bucket
//! (`--kube-api-qps`, `--kube-api-burst`), as client-go rate-limits its
//! clients, so 10,000 Rollouts reconciled at once after a restart queue
//! here instead of flooding the API server. governor's GCRA is the bucket.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;
use kube::client::ClientBuilder;

/// Requests per second on average, and how many may go at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub qps: NonZeroU32,
    pub burst: NonZeroU32,
}

/// A client from the kubeconfig or the in-cluster config, rate-limited.
pub async fn rate_limited(limits: Limits) -> anyhow::Result<Client> {
    let config = kube::Config::infer().await?;
    let quota = Quota::per_second(limits.qps).allow_burst(limits.burst);
    let layer = RateLimitLayer(Arc::new(RateLimiter::direct(quota)));
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[derive(Clone)]
struct RateLimitLayer(Arc<DefaultDirectRateLimiter>);

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            limiter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct RateLimited<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl<S, R> tower::Service<R> for RateLimited<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    /// The request leaves when the bucket has a token: the inner future
    /// does nothing until it is first polled.
    fn call(&mut self, request: R) -> Self::Future {
        let sent = self.inner.call(request);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            limiter.until_ready().await;
            sent.await
        })
    }
}
