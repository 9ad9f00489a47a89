//! A producer configured only by the environment (`Client::from_env`): publishes `tests.add(2,
//! 3)` with the options of its first argument (`notify` or `plain`), gets the typed result,
//! and prints the task id and the result.

use std::time::Duration;

use stevedore::PublishOptions;
use stevedore_tests::tasks;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let notify = std::env::args().nth(1).as_deref() == Some("notify");
    let run = async {
        let client = stevedore::Client::from_env().await?;
        let options = PublishOptions::new().notify(notify);
        let handle = tasks::add::apply_async(&client, (2, 3), options).await?;
        // Typed: the stub's handle is a TaskHandle<i64>.
        let sum: i64 = handle.get(Duration::from_secs(30)).await?;
        println!("{} {sum}", handle.id());
        Ok::<(), stevedore::Error>(())
    };
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
