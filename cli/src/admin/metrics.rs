//! `stevedore metrics [--bind ADDR]`: the cluster-wide gauges, read from Redis at scrape time
//! and served once (not from every worker, which would count each queue N times). The gauges
//! are listed in web/src/metrics.rs ([`stevedore_web::scrape`]); `stevedore web` serves the
//! same at `/metrics`.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Args;
use stevedore::admin::Admin;

/// `stevedore metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Where to serve /metrics.
    #[arg(long, default_value = "127.0.0.1:9401")]
    bind: SocketAddr,
}

/// Serves /metrics until SIGINT or SIGTERM.
pub async fn run(admin: &Admin, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("--bind {}: cannot listen ({e})", args.bind))?;
    eprintln!("serving cluster metrics on http://{}/metrics", args.bind);
    let router = Router::new()
        .route("/metrics", get(serve))
        .with_state(admin.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(signalled()?)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves at SIGINT or SIGTERM: when a server started here stops.
pub fn signalled() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
}

async fn serve(State(admin): State<Admin>) -> (StatusCode, String) {
    match stevedore_web::scrape(&admin).await {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}
