//! `stevedore retry ID... [--json]`: publishes failed (or timed out) tasks again with their
//! own options, each as its next attempt with the retry budget it was published with; goes
//! on past those that cannot be (named on stderr), and exits 1 if there was one.

use std::process::ExitCode;

use clap::Args;
use stevedore::admin::Admin;

/// `retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Task ids (of failed or timed out tasks; `stevedore tasks --state failed` finds them).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Print JSON: `{"retried": [ids], "failed": [{"id", "error"}]}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(admin: &Admin, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let (mut retried, mut failed) = (Vec::new(), Vec::new());
    for id in &args.ids {
        match admin.retry_task(id).await {
            Ok(()) => retried.push(id.clone()),
            Err(
                error @ (stevedore::Error::NotFound { .. } | stevedore::Error::InvalidOptions(_)),
            ) => failed.push((id.clone(), error.to_string())),
            Err(error) => return Err(error.into()),
        }
    }
    if args.json {
        let failed: Vec<_> = (failed.iter())
            .map(|(id, error)| serde_json::json!({"id": id, "error": error}))
            .collect();
        say!(
            "{}",
            serde_json::json!({"retried": retried, "failed": failed})
        );
    } else {
        for id in &retried {
            say!("retried {id}");
        }
        for (_, error) in &failed {
            eprintln!("error: {}", stevedore::admin::format::printable(error));
        }
    }
    Ok(match failed.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}
