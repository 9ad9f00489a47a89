//! `stevedore workflow submit|show|cancel`: workflows described in JSON (docs/protocol.md
//! "Workflows"), as Celery's canvas builds them in code.
//!
//! 1. `submit FILE|-` reads the description, submits it and prints the workflow id; with
//!    `--wait` it then prints the result as JSON on the last line (exit 1 when it failed).
//! 2. `show ID` prints the steps as a tree with their states (`--json`: the same as JSON).
//! 3. `cancel ID` stops publishing the workflow's steps and cancels the ones queued or running.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use stevedore::admin::Admin;
use stevedore::{Error, Workflow};

use super::format::value_to_json;
use stevedore_runtime::parse_duration;

/// Workflow commands.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submits the workflow a JSON file (`-`: stdin) describes and prints its id.
    Submit(SubmitArgs),
    /// Shows a workflow's steps and their states.
    Show(ShowArgs),
    /// Cancels a workflow: nothing more of it starts; its queued and running steps are
    /// cancelled.
    Cancel(CancelArgs),
}

/// `workflow submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The JSON description (`-`: stdin).
    #[arg(default_value = "-")]
    file: String,
    /// Wait for the end and print the result as JSON (exit 1 if the workflow failed).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "60s", value_parser = parse_duration, requires = "wait")]
    wait_timeout: Duration,
    /// Print JSON: `{"workflow": ID}`, and with --wait `{"workflow": ID, "result": ...}`.
    #[arg(long)]
    json: bool,
}

/// `workflow show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The workflow id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `workflow cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The workflow id.
    id: String,
    /// How long to wait for the nodes running its steps to answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print JSON: `{"workflow": ID, "cancelled": [step task ids]}`.
    #[arg(long)]
    json: bool,
}

/// Runs a workflow command.
pub async fn run(admin: &Admin, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkflowCommand::Submit(args) => submit(admin, args).await,
        WorkflowCommand::Show(args) => {
            let view = admin.workflow(&args.id).await?;
            match args.json {
                true => say!("{}", serde_json::to_string(&view)?),
                false => say!("{}", view.render().trim_end()),
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Cancel(args) => {
            let ids = admin.cancel_workflow(&args.id, args.timeout).await?;
            match args.json {
                true => say!(
                    "{}",
                    serde_json::json!({"workflow": args.id, "cancelled": ids})
                ),
                false => say!(
                    "workflow {} cancelled ({} running or queued steps cancelled)",
                    args.id,
                    ids.len()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn submit(admin: &Admin, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let text = match args.file.as_str() {
        "-" => std::io::read_to_string(std::io::stdin())?,
        path => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .context("the workflow description is not JSON (see docs/protocol.md \"Workflows\")")?;
    let handle = admin.submit_workflow(Workflow::from_json(&value)?).await?;
    if !args.wait {
        match args.json {
            true => say!("{}", serde_json::json!({"workflow": handle.id()})),
            false => say!("{}", handle.id()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        say!("{}", handle.id());
    }
    match handle.wait(args.wait_timeout).await {
        Ok(result) => {
            match args.json {
                true => say!(
                    "{}",
                    serde_json::json!({"workflow": handle.id(), "result": result})
                ),
                false => say!("{}", value_to_json(&result)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ Error::WorkflowFailed { .. }) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}
