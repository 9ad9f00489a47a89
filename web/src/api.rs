//! `/api/...`: the operator API as JSON, in the shapes the command line's `--json` prints
//! (`stevedore::admin::json`, docs/protocol.md section 11), for scripts against a running
//! dashboard. Read-only, behind the same authentication as the pages; errors are
//! `{"error": "..."}` with the pages' status codes (404 unknown, 400 bad input, 503 Redis).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stevedore::admin::json;

use crate::pages::tasks::Search;
use crate::pages::Failure;

/// A JSON answer, or the failure as `{"error"}`.
type ApiAnswer = Result<Json<Value>, ApiFailure>;

/// A failure answered as JSON.
pub struct ApiFailure(Failure);

impl From<stevedore::Error> for ApiFailure {
    fn from(error: stevedore::Error) -> Self {
        Self(error.into())
    }
}

impl From<Failure> for ApiFailure {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (status, why): (StatusCode, String) = self.0.parts();
        (status, Json(json!({ "error": why }))).into_response()
    }
}

/// Minutes of throughput `/api/overview` answers with (as the overview page).
const MINUTES: u64 = 60;

/// `GET /api/overview`.
pub async fn overview(State(web): crate::State) -> ApiAnswer {
    let overview = web.admin.overview(MINUTES).await?;
    Ok(Json(json::overview(&overview, stevedore::now_ms())))
}

/// `GET /api/queues`.
pub async fn queues(State(web): crate::State) -> ApiAnswer {
    let now = stevedore::now_ms();
    let queues = web.admin.queues().await?;
    Ok(Json(queues.iter().map(|q| json::queue(q, now)).collect()))
}

/// `GET /api/nodes`.
pub async fn nodes(State(web): crate::State) -> ApiAnswer {
    Ok(Json(json!(web.admin.nodes().await?)))
}

/// `GET /api/tasks?state=...&queue=...&task=...&since=...&error=...&before=...&limit=N`.
pub async fn tasks(State(web): crate::State, Query(search): Query<Search>) -> ApiAnswer {
    let limit = search.limit.unwrap_or(web.config.page_size).clamp(1, 1000);
    let page = web.admin.tasks(&search.query(limit)?).await?;
    Ok(Json(json::task_page(&page)))
}

/// `GET /api/tasks/ID`.
pub async fn task(State(web): crate::State, Path(id): Path<String>) -> ApiAnswer {
    Ok(Json(json::task(&web.admin.task(&id).await?)))
}

/// `GET /api/workflows/ID`.
pub async fn workflow(State(web): crate::State, Path(id): Path<String>) -> ApiAnswer {
    Ok(Json(json!(web.admin.workflow(&id).await?)))
}

/// `GET /api/limits`.
pub async fn limits(State(web): crate::State) -> ApiAnswer {
    let (limits, unreadable) = web.admin.limits().await?;
    let rows: Vec<Value> = limits.iter().map(json::limit).collect();
    let unreadable: serde_json::Map<String, Value> = (unreadable.into_iter())
        .map(|(name, why)| (name, Value::String(why)))
        .collect();
    Ok(Json(json!({"limits": rows, "unreadable": unreadable})))
}

/// `GET /api/metrics/tasks`: each task's runs, failures and p50/p95 run time over the last
/// hour.
pub async fn task_metrics(State(web): crate::State) -> ApiAnswer {
    Ok(Json(json::task_minutes(
        &web.admin.task_minutes(MINUTES).await?,
    )))
}

/// `GET /api/metrics/queues`: each queue's depth per minute over the last hour.
pub async fn queue_metrics(State(web): crate::State) -> ApiAnswer {
    Ok(Json(json::queue_minutes(
        &web.admin.queue_minutes(MINUTES).await?,
    )))
}
