//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by scripts/ensure-chromium), driven over WebDriver: the overview's counts change
//! live as tasks are published, a click leads from a queue to a task, and a dead letter is
//! requeued with its button.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use stevedore::{Client, PublishOptions};
use stevedore_tests::tcp_node::free_port;
use stevedore_tests::{
    dead_task, eventually, test_admin_bin, test_worker_bin, KillOnDrop, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

/// `stevedore web` on a free loopback port; its base URL.
fn dashboard(redis: &RedisServer) -> (KillOnDrop, String) {
    let bind = format!("127.0.0.1:{}", free_port());
    let child = Command::new(test_admin_bin!())
        .args(["--redis-url", &redis.url(), "web", "--bind", &bind])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (KillOnDrop(child), format!("http://{bind}"))
}

/// chromedriver and the Chromium it starts, in a process group of their own: killed together
/// when dropped, also when the test fails before its session is closed.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port and a headless Chromium session through it.
async fn browser() -> (Driver, Browser) {
    use std::os::unix::process::CommandExt as _;
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver (scripts/ensure-chromium installs it)");
    let driver = Driver(driver);
    let options = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    let session = eventually("chromedriver to start a session", WAIT, || async {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities.clone());
        builder.connect(&url).await.ok()
    })
    .await;
    (driver, session)
}

/// Waits until the text of `css` on the shown page contains `needle` (the page refreshes its
/// live parts by itself); returns the text.
async fn shows(page: &Browser, css: &str, needle: &str) -> String {
    let what = format!("{css} to show {needle:?}");
    eventually(&what, WAIT, || async {
        let text = page.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        text.contains(needle).then_some(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_counts_change_clicks_to_a_task_and_requeues_a_dead_letter() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let client = redis.stevedore().await;
    let dead = dead_task(&client, WAIT).await;
    let (_web, base) = dashboard(&redis);
    let (_driver, page) = browser().await;

    let browsed = PublishOptions::new().queue("browsed");
    let publish = |n: usize| {
        let messages = (0..n)
            .map(|i| {
                Client::message(
                    "tests.add",
                    vec![i.into(), 1.into()],
                    Default::default(),
                    &browsed,
                )
                .unwrap()
            })
            .collect::<Vec<_>>();
        let client = client.clone();
        async move { client.publish_many(messages).await.unwrap() }
    };
    let first = publish(2).await;
    page.goto(&base).await.unwrap();
    shows(&page, "#queues", "browsed 2 0 0 0").await;
    publish(3).await;
    shows(&page, "#queues", "browsed 5 0 0 0").await;

    page.find(Locator::LinkText("browsed"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows(&page, "h1", "Queue browsed").await;
    let id = first[0].id().to_owned();
    page.find(Locator::LinkText(&id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows(&page, "h1", &id).await;
    shows(&page, "main", "waiting in browsed").await;

    // No worker from here on: the requeued task stays waiting where the page can see it.
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());
    page.goto(&format!("{base}/dead")).await.unwrap();
    shows(&page, "main", &dead).await;
    let requeue = Locator::Css("form[action$='/requeue'] button");
    page.find(requeue).await.unwrap().click().await.unwrap();
    shows(&page, "main", "No dead letters.").await;
    page.goto(&format!("{base}/queues/default")).await.unwrap();
    shows(&page, "#lists", &dead).await;
    page.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_failures_by_error_and_requeues_every_ticked_dead_letter() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let client = redis.stevedore().await;
    let dead = [
        dead_task(&client, WAIT).await,
        dead_task(&client, WAIT).await,
    ];
    let (_web, base) = dashboard(&redis);
    let (_driver, page) = browser().await;

    page.goto(&format!("{base}/tasks?state=dead"))
        .await
        .unwrap();
    shows(&page, "#found", &dead[0]).await;
    shows(&page, "#found", &dead[1]).await;
    page.find(Locator::Css("input[name=error]"))
        .await
        .unwrap()
        .send_keys("no such")
        .await
        .unwrap();
    page.find(Locator::Css("form.search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows(&page, "main", "no such tasks in the history").await;
    page.goto(&format!("{base}/tasks?state=dead"))
        .await
        .unwrap();
    page.find(Locator::LinkText(&dead[1]))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows(&page, "h1", &dead[1]).await;

    // No worker from here on: the requeued tasks stay waiting where the page can see them.
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());
    page.goto(&format!("{base}/dead")).await.unwrap();
    page.find(Locator::Css("input[data-select-all]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let ticked = Locator::Css("input[name=entry]:checked");
    let boxes = eventually("every box ticked", WAIT, || async {
        let n = page.find_all(ticked).await.ok()?.len();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(boxes, 2);
    let requeue = Locator::Css("form.bulk button[value=requeue]");
    page.find(requeue).await.unwrap().click().await.unwrap();
    shows(&page, "main", "2 requeued").await;
    page.goto(&format!("{base}/queues/default")).await.unwrap();
    shows(&page, "#lists", &dead[0]).await;
    shows(&page, "#lists", &dead[1]).await;
    page.close().await.unwrap();
}
