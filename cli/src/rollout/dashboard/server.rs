//! The dashboard's HTTP side (axum): pages, their event streams, the
//! actions, the embedded assets. Actions need the page's CSRF token in a
//! header (a cross-site form cannot set one); on a loopback address every
//! request must name that address as its Host, so a DNS-rebinding page
//! cannot read or act either.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use maud::Markup;

use super::actions::by_slug;
use super::hub::Hub;
use super::page::{self, Detail};

pub struct App {
    pub hub: Arc<Hub>,
    pub csrf: String,
    /// Host headers accepted; empty: any (bound to a non-loopback address).
    pub hosts: Vec<String>,
}

const CSRF_HEADER: &str = "x-gantry-csrf";
/// Changes closer together than this are sent as one update.
const SETTLE: Duration = Duration::from_millis(100);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/rollouts/{ns}/{name}", get(rollout))
        .route("/updates", get(index_updates))
        .route("/updates/rollouts/{ns}/{name}", get(rollout_updates))
        .route("/api/rollouts/{ns}/{name}/{action}", post(act))
        .route("/assets/app.js", get(script))
        .route("/assets/style.css", get(style))
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .with_state(app)
}

async fn check_host(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !app.hosts.is_empty() && !app.hosts.iter().any(|h| h == host) {
        return (
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this dashboard's address"),
        )
            .into_response();
    }
    next.run(request).await
}

/// Which fragment a page shows.
#[derive(Clone)]
enum View {
    Index,
    Rollout(String, String),
}

impl App {
    fn problems(&self) -> Vec<String> {
        let problems = self.hub.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems.values().cloned().collect()
    }

    fn fragment(&self, view: &View) -> Markup {
        let hub = &self.hub;
        match view {
            View::Index => {
                let mut rollouts = hub.rollouts.state();
                rollouts.sort_by_key(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()));
                page::index(&rollouts, &hub.replica_sets.state(), &self.problems())
            }
            View::Rollout(ns, name) => {
                let key = kube::runtime::reflector::ObjectRef::new(name).within(ns);
                let Some(rollout) = hub.rollouts.get(&key) else {
                    return page::missing(ns, name, &self.problems());
                };
                let replica_sets = hub.replica_sets.state();
                let events = hub.events.state();
                let templates = hub.templates.state();
                let series = hub
                    .history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .series(ns, name);
                page::rollout(&Detail {
                    rollout: &rollout,
                    replica_sets: page::owned(&rollout, &replica_sets),
                    events: events
                        .iter()
                        .filter(|e| {
                            e.metadata.namespace.as_deref() == Some(ns)
                                && e.regarding.as_ref().and_then(|o| o.name.as_deref())
                                    == Some(name)
                        })
                        .map(|e| e.as_ref())
                        .collect(),
                    templates: templates
                        .iter()
                        .filter(|t| t.metadata.namespace.as_deref() == Some(ns))
                        .map(|t| t.as_ref())
                        .collect(),
                    series,
                    problems: self.problems(),
                    now: jiff::Timestamp::now(),
                })
            }
        }
    }

    fn page(&self, title: &str, updates: &str, view: &View) -> Html<String> {
        Html(page::shell(title, &self.csrf, updates, self.fragment(view)).into_string())
    }

    /// The fragment again at every change (when it differs from the last one sent).
    fn updates(
        self: Arc<Self>,
        view: View,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
        let changes = self.hub.subscribe();
        let stream =
            futures::stream::unfold((changes, String::new()), move |(mut changes, last)| {
                let app = self.clone();
                let view = view.clone();
                async move {
                    loop {
                        changes.changed().await.ok()?;
                        tokio::time::sleep(SETTLE).await;
                        changes.borrow_and_update();
                        let html = app.fragment(&view).into_string();
                        if html != last {
                            let event = SseEvent::default().event("update").data(&html);
                            return Some((Ok(event), (changes, html)));
                        }
                    }
                }
            });
        Sse::new(stream).keep_alive(KeepAlive::default())
    }
}

async fn index(State(app): State<Arc<App>>) -> Response {
    let scope = app
        .hub
        .namespace
        .clone()
        .unwrap_or_else(|| "all namespaces".into());
    app.page(&format!("Rollouts in {scope}"), "/updates", &View::Index)
        .into_response()
}

async fn rollout(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if !app.hub.shows(&ns) {
        return not_shown(&ns);
    }
    let updates = format!("/updates/rollouts/{ns}/{name}");
    app.page(&format!("{ns}/{name}"), &updates, &View::Rollout(ns, name))
        .into_response()
}

async fn index_updates(State(app): State<Arc<App>>) -> Response {
    app.updates(View::Index).into_response()
}

async fn rollout_updates(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if !app.hub.shows(&ns) {
        return not_shown(&ns);
    }
    app.updates(View::Rollout(ns, name)).into_response()
}

fn not_shown(ns: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("namespace {ns} is not shown by this dashboard (start it with -n {ns} or -A)"),
    )
        .into_response()
}

/// An operation, with the user's credentials; the API server's refusal
/// (RBAC, a conflict) is the answer's text.
async fn act(
    State(app): State<Arc<App>>,
    Path((ns, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers.get(CSRF_HEADER).map(|v| v.as_bytes());
    if !token.is_some_and(|t| same(t, app.csrf.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page",
        )
            .into_response();
    }
    if !app.hub.shows(&ns) {
        return not_shown(&ns);
    }
    let Some(action) = by_slug(&action) else {
        return (StatusCode::NOT_FOUND, format!("no action {action:?}")).into_response();
    };
    let op = (action.op)(jiff::Timestamp::now());
    match crate::rollout::cluster::act(app.hub.client.clone(), &ns, &name, op).await {
        Ok(done) => (StatusCode::OK, done).into_response(),
        Err(e) => {
            let refusal = refusal(&e);
            tracing::warn!("dashboard: {} {ns}/{name}: {refusal}", action.slug);
            (StatusCode::BAD_GATEWAY, refusal).into_response()
        }
    }
}

/// What went wrong, with the API server's own message when it refused
/// (`… is forbidden: User "dev" cannot patch …`), not its whole Status.
fn refusal(e: &anyhow::Error) -> String {
    let api = e
        .chain()
        .find_map(|cause| match cause.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => Some(status),
            _ => None,
        });
    match api {
        Some(status) => format!("{e}: {} ({})", status.message, status.code),
        None => format!("{e:#}"),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn script() -> Response {
    asset("text/javascript", include_str!("assets/app.js"))
}

async fn style() -> Response {
    asset("text/css", include_str!("assets/style.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}
