//! `stevedore-web`: a dashboard of the whole cluster, answered from Redis state alone.
//!
//! 1. [`router`] serves the pages (`/`, `/queues/NAME`, `/tasks` (search), `/tasks/ID`,
//!    `/workflows`, `/workflows/ID`, `/nodes`, `/dead`, `/schedules`, `/limits`), the same views as JSON under `/api`
//!    (`api.rs`), the cluster gauges for Prometheus (`/metrics`, [`scrape`]), and the
//!    actions (POSTs under the same paths) over the operator API (`stevedore::admin`); apps
//!    embed it, `stevedore web --bind ADDR` serves it.
//! 2. Pages are server-rendered (maud: checked at compile time, everything from Redis escaped)
//!    and work without JavaScript: actions are forms that POST then redirect. A few lines of
//!    script refresh the parts marked live every few seconds.
//! 3. Safe to expose (`guard.rs`, [`Auth`]): authentication (bearer token or basic auth) when configured,
//!    required by `stevedore web` off loopback; a CSRF token on every action; `read_only`
//!    refuses every action with 403; arguments and results are hidden, shown per page
//!    (`?args=1`) only where `show_args` allows it.
//! 4. Fast: each page is a bounded number of Redis round trips, whatever a queue holds (lists
//!    are pages of [`WebConfig::page_size`]).

mod api;
mod chart;
mod guard;
mod layout;
mod metrics;
mod pages;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use stevedore::Client;

pub use guard::Auth;
pub use metrics::scrape;

/// How the dashboard behaves.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Refuse every action (403): a dashboard to look at only.
    pub read_only: bool,
    /// Let operators show task arguments and results on a page (its `?args=1` toggle);
    /// without it the toggle is refused with 403. Off by default: arguments may hold what
    /// operators should not see.
    pub show_args: bool,
    /// Who may see it; `None`: anyone who can reach it (loopback only, in `stevedore web`).
    pub auth: Option<Auth>,
    /// Rows per list.
    pub page_size: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            read_only: false,
            show_args: false,
            auth: None,
            page_size: 50,
        }
    }
}

/// What every handler shares.
pub(crate) struct Web {
    /// The operator API: the only way the pages read or change anything.
    pub admin: stevedore::admin::Admin,
    pub config: WebConfig,
    /// The key CSRF tokens are bound to.
    pub csrf_key: guard::CsrfKey,
}

/// Shared state of the handlers.
pub(crate) type State = axum::extract::State<Arc<Web>>;

/// The dashboard's pages and actions over `client`.
pub fn router(client: Client, config: WebConfig) -> Router {
    let web = Arc::new(Web {
        admin: client.admin(),
        config,
        csrf_key: guard::CsrfKey::random(),
    });
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/queues/{name}", get(pages::queue::page))
        .route("/queues/{name}/pause", post(pages::queue::pause))
        .route("/queues/{name}/resume", post(pages::queue::resume))
        .route("/queues/{name}/purge", post(pages::queue::purge))
        .route("/tasks", get(pages::tasks::page))
        .route("/tasks/{id}", get(pages::task::page))
        .route("/tasks/{id}/cancel", post(pages::task::cancel))
        .route("/tasks/{id}/requeue", post(pages::task::requeue))
        .route("/tasks/{id}/retry", post(pages::task::retry))
        .route("/tasks/retry", post(pages::tasks::retry_selected))
        .route("/workflows", get(pages::workflows::list))
        .route("/workflows/{id}", get(pages::workflows::page))
        .route("/nodes", get(pages::nodes::page))
        .route("/nodes/{node}/reload", post(pages::nodes::reload))
        .route("/dead", get(pages::dead::page))
        .route("/dead/{queue}/{entry}/requeue", post(pages::dead::requeue))
        .route("/dead/{queue}/{entry}/delete", post(pages::dead::delete))
        .route("/dead/{queue}/purge", post(pages::dead::purge))
        .route("/dead/{queue}/selected", post(pages::dead::selected))
        .route("/dead/{queue}/requeue-all", post(pages::dead::requeue_all))
        .route("/limits", get(pages::limits::page))
        .route(
            "/schedules",
            get(pages::schedules::page).post(pages::schedule_form::save),
        )
        .route("/schedules/new", get(pages::schedule_form::new))
        .route("/schedules/{name}/edit", get(pages::schedule_form::edit))
        .route("/schedules/{name}/run", post(pages::schedules::run))
        .route("/schedules/{name}/pause", post(pages::schedules::pause))
        .route("/schedules/{name}/resume", post(pages::schedules::resume))
        .route("/schedules/{name}/remove", post(pages::schedules::remove))
        .route("/api/overview", get(api::overview))
        .route("/api/queues", get(api::queues))
        .route("/api/nodes", get(api::nodes))
        .route("/api/tasks", get(api::tasks))
        .route("/api/tasks/{id}", get(api::task))
        .route("/api/workflows/{id}", get(api::workflow))
        .route("/api/limits", get(api::limits))
        .route("/api/metrics/tasks", get(api::task_metrics))
        .route("/api/metrics/queues", get(api::queue_metrics))
        .route("/live.js", get(layout::live_script))
        .route("/metrics", get(metrics::serve))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::check,
        ))
        .with_state(web)
}
