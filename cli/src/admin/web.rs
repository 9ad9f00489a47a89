//! `stevedore web [--bind ADDR] [--read-only] [--show-args]`: serves the dashboard
//! (`stevedore-web`) until SIGINT/SIGTERM.
//!
//! 1. Authentication from the environment: `STEVEDORE_WEB_TOKEN` (bearer), or
//!    `STEVEDORE_WEB_USER` + `STEVEDORE_WEB_PASSWORD` (basic), each also as `..._FILE`.
//! 2. A non-loopback address without authentication is refused: the dashboard acts on the
//!    cluster.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use stevedore::admin::Admin;
use stevedore_web::{Auth, WebConfig};

/// `stevedore web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Where to serve the dashboard.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Refuse every action: a dashboard to look at only.
    #[arg(long)]
    read_only: bool,
    /// Let operators show task arguments and results on a page ("show arguments"); without
    /// it they stay hidden and the toggle is refused.
    #[arg(long)]
    show_args: bool,
}

/// Serves the dashboard until SIGINT or SIGTERM.
pub async fn run(admin: &Admin, args: WebArgs) -> anyhow::Result<ExitCode> {
    let auth = auth_from_env()?;
    if auth.is_none() && !args.bind.ip().is_loopback() {
        anyhow::bail!(
            "--bind {}: serving off loopback needs authentication; set STEVEDORE_WEB_TOKEN, or \
             STEVEDORE_WEB_USER and STEVEDORE_WEB_PASSWORD (or their _FILE forms)",
            args.bind
        );
    }
    let config = WebConfig {
        read_only: args.read_only,
        show_args: args.show_args,
        auth,
        ..WebConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("--bind {}: cannot listen ({e})", args.bind))?;
    eprintln!("serving the dashboard on http://{}/", args.bind);
    let app = stevedore_web::router(admin.client().clone(), config);
    axum::serve(listener, app)
        .with_graceful_shutdown(super::metrics::signalled()?)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The authentication the environment configures, if any.
fn auth_from_env() -> anyhow::Result<Option<Auth>> {
    if let Some(token) = secret("STEVEDORE_WEB_TOKEN")? {
        return Ok(Some(Auth::Token(token)));
    }
    match (
        secret("STEVEDORE_WEB_USER")?,
        secret("STEVEDORE_WEB_PASSWORD")?,
    ) {
        (Some(user), Some(password)) => Ok(Some(Auth::Basic { user, password })),
        (None, None) => Ok(None),
        _ => anyhow::bail!("set both STEVEDORE_WEB_USER and STEVEDORE_WEB_PASSWORD, or neither"),
    }
}

/// Variable `name`, or the first line of the file `name_FILE` names.
fn secret(name: &str) -> anyhow::Result<Option<String>> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Ok(Some(value));
    }
    let Some(path) = std::env::var_os(format!("{name}_FILE")) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {name}_FILE ({})", path.to_string_lossy()))?;
    Ok(text
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|v| !v.is_empty()))
}
