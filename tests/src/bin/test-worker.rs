//! The stock worker with the test tasks linked in. With `STEVEDORE_TEST_HOOKS` set, it also
//! installs hooks that note each call in `tests:hooks`, and a start-up task.

use stevedore::PublishOptions;
use stevedore_tests::tasks;

fn main() -> std::process::ExitCode {
    tasks::link();
    let worker = stevedore_worker::Worker::new();
    if std::env::var_os("STEVEDORE_TEST_HOOKS").is_none() {
        return worker.main();
    }
    worker
        .on_start(|node| tasks::note_hook(format!("start:{}", node.node)))
        .on_shutdown(|node| tasks::note_hook(format!("shutdown:{}", node.node)))
        .before_task(|run| tasks::note_hook(format!("before:{}", run.id)))
        .after_task(|run| tasks::note_hook(format!("after:{}:{}", run.id, run.state.as_str())))
        .publish_on_start(|node| tasks::count_run::message((), &PublishOptions::new().node(node)))
        .main()
}
