//! The dashboard's router against a real redis-server (no browser): every page answers, what
//! came from Redis is escaped, actions need the CSRF token, auth and read-only refuse, and a
//! requeue empties the dead letters.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use stevedore::{Client, PublishOptions};
use stevedore_tests::{dead_task, test_worker_bin, RedisServer, WorkerProcess};
use stevedore_web::{router, Auth, WebConfig};
use tower::ServiceExt as _;

const WAIT: Duration = Duration::from_secs(30);

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// A browser's CSRF cookie value, as a first GET hands it out.
async fn csrf_cookie(app: &Router) -> String {
    let page = get(app, "/").await;
    let cookie = page
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    token.to_owned()
}

/// `POST path` with the form `fields`, sending `cookie` as the CSRF cookie.
async fn post(app: &Router, path: &str, cookie: Option<&str>, fields: &str) -> Answer {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(token) = cookie {
        request = request.header(header::COOKIE, format!("stevedore_csrf={token}"));
    }
    send(app, request.body(Body::from(fields.to_owned())).unwrap()).await
}

async fn dashboard(redis: &RedisServer, config: WebConfig) -> (Client, Router) {
    let client = redis.stevedore().await;
    (client.clone(), router(client, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_and_shows_what_redis_holds() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let done = stevedore_tests::tasks::add::apply_async(
        &client,
        (2, 3),
        PublishOptions::new().notify(true),
    );
    let done = done.await.unwrap();
    done.get(WAIT).await.unwrap();
    let dead = dead_task(&client, WAIT).await;
    let waiting = PublishOptions::new().queue("parked");
    let parked = Client::message(
        "tests.add",
        vec![1.into(), 1.into()],
        Default::default(),
        &waiting,
    )
    .unwrap();
    let parked = client.publish(parked).await.unwrap();

    let overview = get(&app, "/").await;
    assert_eq!(overview.status, StatusCode::OK);
    let minutes = client.broker().throughput(2).await.unwrap();
    let settled: u64 = minutes.iter().map(|(_, n)| n).sum();
    assert_eq!(
        settled, 3,
        "add, and the failing task's two attempts: {minutes:?}"
    );
    assert!(overview.body.contains("<svg"), "the throughput chart");
    assert!(
        overview.body.contains("href=\"/queues/parked\""),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("/nodes/w1/reload"),
        "the nodes' table"
    );
    assert!(
        overview.body.contains("1 live, 0 lost"),
        "{}",
        overview.body
    );
    let queue = get(&app, "/queues/parked").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(
        queue.body.contains(parked.id()),
        "the waiting task is listed"
    );
    let task = get(&app, &format!("/tasks/{}", done.id())).await;
    assert_eq!(task.status, StatusCode::OK);
    assert!(task.body.contains("succeeded") && task.body.contains("w1"));
    let dead_page = get(&app, "/dead").await;
    assert!(dead_page.body.contains(&dead), "the dead task is listed");
    let nodes = get(&app, "/nodes").await;
    assert!(nodes.body.contains("w1") && nodes.body.contains("live"));
    assert_eq!(get(&app, "/schedules").await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/tasks/no-such-task").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/queues/bad%20name").await.status,
        StatusCode::BAD_REQUEST
    );
    let found = get(&app, &format!("/tasks?id={}", done.id())).await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_redis_are_escaped() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let options = PublishOptions::new().queue("shown");
    let hostile = Client::message(
        "<script>alert(1)</script>",
        vec![],
        Default::default(),
        &options,
    );
    client.publish(hostile.unwrap()).await.unwrap();
    let page = get(&app, "/queues/shown").await;
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_csrf_token_and_then_act() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let token = csrf_cookie(&app).await;
    let no_field = post(&app, "/queues/default/pause", Some(&token), "").await;
    assert_eq!(no_field.status, StatusCode::FORBIDDEN);
    let wrong = post(&app, "/queues/default/pause", Some(&token), "csrf=0123").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let no_cookie = post(
        &app,
        "/queues/default/pause",
        None,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(
        client.broker().paused_queues().await.unwrap().is_empty(),
        "nothing done"
    );

    let paused = post(
        &app,
        "/queues/default/pause",
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    assert_eq!(paused.headers[header::LOCATION], "/queues/default");
    assert_eq!(client.broker().paused_queues().await.unwrap(), ["default"]);
    let unconfirmed = post(
        &app,
        "/queues/default/purge",
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(
        unconfirmed.status,
        StatusCode::BAD_REQUEST,
        "a purge must be confirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_post_empties_the_dead_letters_and_the_task_waits_again() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let dead = dead_task(&client, WAIT).await;
    // No worker from here on: the requeued task stays where the requeue put it.
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());
    let token = csrf_cookie(&app).await;
    let form = format!("csrf={token}");
    let requeued = post(&app, &format!("/tasks/{dead}/requeue"), Some(&token), &form).await;
    assert_eq!(requeued.status, StatusCode::SEE_OTHER, "{}", requeued.body);

    let default = stevedore::Destination::queue("default").unwrap();
    let left = client.broker().dead_letters(&default, 10).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let queue = get(&app, "/queues/default").await;
    assert!(queue.body.contains(&dead), "waiting again: {}", queue.body);
    let again = post(&app, &format!("/tasks/{dead}/requeue"), Some(&token), &form).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "not dead any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_read_only_refuse() {
    let redis = RedisServer::start();
    let token = WebConfig {
        auth: Some(Auth::Token("s3cret".into())),
        ..WebConfig::default()
    };
    let (_, app) = dashboard(&redis, token).await;
    assert_eq!(get(&app, "/").await.status, StatusCode::UNAUTHORIZED);
    let with = Request::get("/").header(header::AUTHORIZATION, "Bearer s3cret");
    assert_eq!(
        send(&app, with.body(Body::empty()).unwrap()).await.status,
        StatusCode::OK
    );
    let wrong = Request::get("/").header(header::AUTHORIZATION, "Bearer s3cre");
    assert_eq!(
        send(&app, wrong.body(Body::empty()).unwrap()).await.status,
        StatusCode::UNAUTHORIZED
    );

    let basic = Auth::Basic {
        user: "ops".into(),
        password: "s3cret".into(),
    };
    let (_, app) = dashboard(
        &redis,
        WebConfig {
            auth: Some(basic),
            ..WebConfig::default()
        },
    )
    .await;
    let refused = get(&app, "/").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers.contains_key(header::WWW_AUTHENTICATE),
        "the browser asks"
    );
    let with = Request::get("/").header(header::AUTHORIZATION, "Basic b3BzOnMzY3JldA==");
    assert_eq!(
        send(&app, with.body(Body::empty()).unwrap()).await.status,
        StatusCode::OK
    );

    let read_only = WebConfig {
        read_only: true,
        ..WebConfig::default()
    };
    let (client, app) = dashboard(&redis, read_only).await;
    let token = csrf_cookie(&app).await;
    let refused = post(
        &app,
        "/queues/default/pause",
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(client.broker().paused_queues().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stevedore_web_serves_on_loopback_and_refuses_the_open_network_without_auth() {
    let redis = RedisServer::start();
    let open = stevedore_tests::run_cli(
        stevedore_tests::test_admin_bin!(),
        &redis.url(),
        &["web", "--bind", "0.0.0.0:0"],
    );
    assert!(!open.status.success());
    let error = String::from_utf8_lossy(&open.stderr);
    assert!(error.contains("STEVEDORE_WEB_TOKEN"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let _served = stevedore_tests::KillOnDrop(
        std::process::Command::new(stevedore_tests::test_admin_bin!())
            .args(["--redis-url", &redis.url(), "web", "--bind", &bind])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let page = stevedore_tests::eventually("the dashboard to answer", WAIT, || async {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut page = String::new();
        stream.read_to_string(&mut page).ok()?;
        Some(page)
    })
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_read_the_queue_registry_and_workers_register_older_queues() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let options = PublishOptions::new().queue("registered");
    let message = Client::message(
        "tests.add",
        vec![1.into(), 2.into()],
        Default::default(),
        &options,
    );
    client.publish(message.unwrap()).await.unwrap();
    // A queue written before the registry existed: its stream only.
    let mut conn = redis.connection().await;
    let older = stevedore_tests::keys().stream(&stevedore::Destination::queue("older").unwrap());
    let _: String = redis::cmd("XADD")
        .arg(&older)
        .arg("*")
        .arg("m")
        .arg(stevedore_tests::GARBAGE)
        .query_async(&mut conn)
        .await
        .unwrap();
    let names = |queues: Vec<stevedore::QueueStats>| -> Vec<String> {
        queues.iter().map(|q| q.destination.wire_name()).collect()
    };
    let listed = names(client.queues().await.unwrap());
    assert_eq!(
        listed,
        ["registered"],
        "read from the registry, not by walking every key"
    );

    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    stevedore_tests::eventually("the worker to register the older queue", WAIT, || async {
        let listed = names(client.queues().await.ok()?);
        listed.contains(&"older".to_owned()).then_some(listed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_page_shows_what_runs_and_its_buttons_cancel_and_reload() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let blocked = stevedore_tests::tasks::block::delay(&client).await.unwrap();
    stevedore_tests::running(&client, blocked.id()).await;

    let nodes = get(&app, "/nodes").await;
    assert_eq!(nodes.status, StatusCode::OK);
    let running = nodes.body.split("Running now").nth(1).unwrap();
    assert!(running.contains(blocked.id()), "{running}");
    assert!(
        running.contains("tests.block("),
        "its call's shape: {running}"
    );
    let cancel = format!("/tasks/{}/cancel", blocked.id());
    assert!(running.contains(&cancel), "a cancel button: {running}");
    assert!(nodes.body.contains("/nodes/w1/reload"), "a reload button");

    let token = csrf_cookie(&app).await;
    let form = format!("csrf={token}");
    assert_eq!(
        post(&app, &cancel, Some(&token), &form).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(blocked.get(WAIT).await.is_err(), "cancelled");
    let record = client.task(blocked.id()).await.unwrap();
    assert_eq!(record.state(), stevedore::TaskState::Cancelled);
    let reload = post(&app, "/nodes/w1/reload", Some(&token), &form).await;
    assert_eq!(reload.status, StatusCode::SEE_OTHER);
    assert_eq!(reload.headers[header::LOCATION], "/nodes");

    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.body.contains("stevedore_nodes{state=\"live\"} 1"),
        "{}",
        metrics.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_stay_hidden_unless_asked_for_on_a_server_that_allows_it() {
    let redis = RedisServer::start();
    let (client, hidden) = dashboard(&redis, WebConfig::default()).await;
    let options = PublishOptions::new().queue("argued");
    let call = vec!["<b>secret</b>".into(), 7.into()];
    let message = Client::message("tests.join", call, Default::default(), &options);
    client.publish(message.unwrap()).await.unwrap();

    let page = get(&hidden, "/queues/argued").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("secret"), "hidden by default");
    assert!(
        !page.body.contains("show arguments"),
        "no toggle where it is refused"
    );
    let refused = get(&hidden, "/queues/argued?args=1").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.body.contains("secret"));

    let allowed = WebConfig {
        show_args: true,
        ..WebConfig::default()
    };
    let (_, app) = dashboard(&redis, allowed).await;
    let page = get(&app, "/queues/argued").await;
    assert!(!page.body.contains("secret"), "still hidden until asked");
    assert!(
        page.body.contains("href=\"/queues/argued?args=1\""),
        "the toggle"
    );
    let shown = get(&app, "/queues/argued?args=1").await;
    assert!(
        shown.body.contains("&lt;b&gt;secret&lt;/b&gt;"),
        "{}",
        shown.body
    );
}

/// The `href` of the link labelled `label` in `page`.
fn link(page: &str, label: &str) -> Option<String> {
    let end = page.find(&format!(">{label}</a>"))?;
    let start = page[..end].rfind("href=\"")? + "href=\"".len();
    Some(page[start..end].trim_end_matches('"').replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_are_paged_without_repeating_or_skipping_a_task() {
    let redis = RedisServer::start();
    let config = WebConfig {
        page_size: 2,
        ..WebConfig::default()
    };
    let (client, app) = dashboard(&redis, config).await;
    let mut published = Vec::new();
    for (n, delay) in [(5, None), (3, Some(Duration::from_secs(3600)))] {
        let mut options = PublishOptions::new().queue("paged");
        if let Some(delay) = delay {
            options = options.delay(delay);
        }
        let messages = (0..n)
            .map(|i: i64| {
                Client::message(
                    "tests.add",
                    vec![i.into(), 0.into()],
                    Default::default(),
                    &options,
                )
                .unwrap()
            })
            .collect();
        published.push(client.publish_many(messages).await.unwrap());
    }
    let mut conn = redis.connection().await;
    let dead = stevedore_tests::dead_of("paged");
    let options = PublishOptions::new().queue("paged");
    for i in 0..3 {
        let raw = Client::message(
            "tests.add",
            vec![i.into(), 0.into()],
            Default::default(),
            &options,
        );
        let raw = raw.unwrap().encode().unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg(&[
                ("reason", format!("letter {i}").into_bytes()),
                ("raw", raw),
                ("source_id", b"0-1".to_vec()),
                ("dead_at", b"1".to_vec()),
            ])
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    // Every waiting task once, across three pages of two, then the delayed ones.
    let (mut seen_waiting, mut seen_delayed) = (Vec::new(), Vec::new());
    let mut path = Some("/queues/paged".to_owned());
    for _ in 0..10 {
        let Some(at) = path else { break };
        let page = get(&app, &at).await;
        assert_eq!(page.status, StatusCode::OK, "{at}");
        let waiting = page.body.split("Waiting (oldest first)").nth(1).unwrap();
        let (waiting, delayed) = waiting.split_once("Delayed (soonest first)").unwrap();
        for (list, seen) in [(waiting, &mut seen_waiting), (delayed, &mut seen_delayed)] {
            let rows = published.iter().flatten().filter(|h| list.contains(h.id()));
            seen.extend(rows.map(|h| h.id().to_owned()));
        }
        path = link(&page.body, "next page");
    }
    assert_eq!(path, None, "the pages end");
    seen_waiting.dedup();
    let ids = |handles: &[stevedore::TaskHandle]| {
        handles
            .iter()
            .map(|h| h.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen_waiting,
        ids(&published[0]),
        "in order, none twice, none missed"
    );
    seen_delayed.sort();
    seen_delayed.dedup();
    let mut delayed = ids(&published[1]);
    delayed.sort();
    assert_eq!(seen_delayed, delayed);

    let first = get(&app, "/dead").await;
    assert!(first.body.contains("letter 0") && first.body.contains("letter 1"));
    assert!(!first.body.contains("letter 2"));
    let next = get(&app, &link(&first.body, "next page").unwrap()).await;
    assert!(
        next.body.contains("letter 2") && !next.body.contains("letter 1"),
        "{}",
        next.body
    );
    assert_eq!(link(&next.body, "next page"), None);

    let token = csrf_cookie(&app).await;
    let form = format!("csrf={token}");
    let unconfirmed = post(&app, "/dead/paged/requeue-all", Some(&token), &form).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let confirmed = format!("{form}&confirm=yes");
    let all = post(&app, "/dead/paged/requeue-all", Some(&token), &confirmed).await;
    assert_eq!(all.status, StatusCode::SEE_OTHER, "{}", all.body);
    let queue = stevedore::Destination::queue("paged").unwrap();
    assert!(client
        .broker()
        .dead_letters(&queue, 10)
        .await
        .unwrap()
        .is_empty());
    let waiting = client.broker().queue_info(queue).await.unwrap().waiting;
    assert_eq!(waiting, 5 + 3, "the three letters wait again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_404_and_offer_no_action() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    stevedore_tests::tasks::add::delay(&client, 1, 2)
        .await
        .unwrap();
    let known = get(&app, "/queues/default").await;
    assert_eq!(known.status, StatusCode::OK, "{}", known.body);
    for path in [
        "/queues/typo",
        "/dead?queue=typo",
        "/tasks/0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11",
        "/tasks/not-a-uuid",
    ] {
        let page = get(&app, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(
            !page.body.contains("method=\"post\""),
            "{path} offers an action"
        );
    }
    let token = csrf_cookie(&app).await;
    let form = format!("csrf={token}&confirm=yes");
    for path in [
        "/schedules/nope/pause",
        "/schedules/nope/remove",
        "/dead/default/1-1/requeue",
        "/dead/default/1-1/delete",
        "/tasks/0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11/requeue",
        "/queues/typo/purge",
    ] {
        let answer = post(&app, path, Some(&token), &form).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.body
        );
    }
}

fn cli_json(redis: &RedisServer, args: &[&str]) -> serde_json::Value {
    let out = stevedore_tests::run_cli(env!("CARGO_BIN_EXE_test-admin"), &redis.url(), args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn api(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let answer = get(app, path).await;
    let json =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    (answer.status, json)
}

/// Two failures (`boom <b>`, `kaput`) and one success, once the history lists the failures:
/// their ids and `tasks --state failed --json`.
async fn two_failures_and_a_success(
    redis: &RedisServer,
    client: &Client,
) -> (String, String, serde_json::Value) {
    let fail = |text: &str| {
        let options = PublishOptions::new();
        let message = Client::message(
            "stevedore.fail",
            vec![text.into()],
            Default::default(),
            &options,
        );
        let client = client.clone();
        async move {
            client
                .publish(message.unwrap())
                .await
                .unwrap()
                .id()
                .to_owned()
        }
    };
    let (boom, kaput) = (fail("boom <b>").await, fail("kaput").await);
    let added = stevedore_tests::tasks::add::apply_async(client, (2, 3), PublishOptions::new());
    added.await.unwrap().get(WAIT).await.unwrap();
    let cli = stevedore_tests::eventually("both failures in the history", WAIT, || {
        let json = cli_json(redis, &["tasks", "--state", "failed", "--json"]);
        async move { (json["tasks"].as_array()?.len() == 2).then_some(json) }
    })
    .await;
    (boom, kaput, cli)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_search_limits_and_json_api_show_what_the_cli_shows() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let admin = client.admin();
    let spec = stevedore::limits::LimitSpec {
        rate: None,
        concurrency: Some(3),
    };
    admin.set_limit("db", &spec).await.unwrap();
    let (boom, kaput, cli) = two_failures_and_a_success(&redis, &client).await;
    let (status, from_api) = api(&app, "/api/tasks?state=failed").await;
    assert_eq!(
        (status, &from_api),
        (StatusCode::OK, &cli),
        "one shape, one truth"
    );
    let page = get(&app, "/tasks?state=failed").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&boom) && page.body.contains(&kaput),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("boom &lt;b&gt;"),
        "escaped: {}",
        page.body
    );
    let filtered = get(&app, "/tasks?state=failed&error=KAPUT&since=1h").await;
    assert!(filtered.body.contains(&kaput) && !filtered.body.contains(&boom));
    let bad_since = get(&app, "/tasks?state=failed&since=soon").await;
    assert_eq!(bad_since.status, StatusCode::BAD_REQUEST);
    let (status, error) = api(&app, "/api/tasks?state=running").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("give one of succeeded"));

    let (_, task) = api(&app, &format!("/api/tasks/{boom}")).await;
    assert_eq!(task, cli_json(&redis, &["task", &boom, "--json"]));
    let (_, limits) = api(&app, "/api/limits").await;
    assert_eq!(
        limits["limits"],
        cli_json(&redis, &["limit", "list", "--json"])
    );
    let limits_page = get(&app, "/limits").await;
    assert!(
        limits_page.body.contains("db") && limits_page.body.contains(">3<"),
        "{}",
        limits_page.body
    );
    let (_, nodes) = api(&app, "/api/nodes").await;
    assert_eq!(
        nodes[0]["node"],
        cli_json(&redis, &["nodes", "--json"])[0]["node"]
    );
    let (_, queues) = api(&app, "/api/queues").await;
    let cli_queues = cli_json(&redis, &["queues", "--json"]);
    assert_eq!(queues[0]["queue"], cli_queues[0]["queue"]);
    assert_eq!(queues[0]["dead"], cli_queues[0]["dead"]);
    let (_, overview) = api(&app, "/api/overview").await;
    assert_eq!(overview["queues"][0]["queue"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_charts_runs_per_minute_and_each_tasks_failures_and_run_times() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    two_failures_and_a_success(&redis, &client).await;
    let (_, metrics) = api(&app, "/api/metrics/tasks").await;
    let row = |name: &str| {
        (metrics["tasks"].as_array().unwrap().iter())
            .find(|t| t["task"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(
        (
            row("stevedore.fail")["runs"].as_u64(),
            row("stevedore.fail")["failed"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(row("tests.add")["failed"], 0);
    assert!(row("tests.add")["p95_ms"].is_u64(), "{metrics}");
    let overview_page = get(&app, "/").await;
    let body = &overview_page.body;
    assert!(
        body.contains("runs/min") && body.contains(">succeeded</text>"),
        "the chart's axis and legend: {body}"
    );
    assert!(
        body.contains("1 succeeded, ") && body.contains("2 failed"),
        "{body}"
    );
    assert!(
        body.contains("/tasks?state=failed&amp;task=stevedore.fail"),
        "the task table links its failures: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csrf_token_this_server_did_not_issue_is_refused_even_when_cookie_and_field_match() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let (_, other) = dashboard(&redis, WebConfig::default()).await;
    let foreign = csrf_cookie(&other).await;
    for planted in ["abc", "0123456789abcdef0123456789abcdef", foreign.as_str()] {
        let form = format!("csrf={planted}");
        let refused = post(&app, "/queues/default/pause", Some(planted), &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{planted}");
    }
    assert!(client.broker().paused_queues().await.unwrap().is_empty());
    let page = send(
        &app,
        Request::get("/")
            .header(header::COOKIE, "stevedore_csrf=abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let fresh = page
        .headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        fresh.is_some_and(|c| c.contains('.')),
        "a planted cookie is replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticked_dead_letters_are_requeued_or_deleted_together() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let mut dead = Vec::new();
    for _ in 0..4 {
        dead.push(dead_task(&client, WAIT).await);
    }
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());
    let default = stevedore::Destination::queue("default").unwrap();
    let letters = client.broker().dead_letters(&default, 10).await.unwrap();
    let entries: Vec<String> = letters.iter().map(|l| l.entry_id.clone()).collect();
    let page = get(&app, "/dead").await;
    assert!(page.body.contains("data-select-all") && page.body.contains("Requeue selected"));
    let token = csrf_cookie(&app).await;
    let form = |action: &str, picked: &[String]| {
        let fields: String = picked.iter().map(|e| format!("&entry={e}")).collect();
        format!("csrf={token}&do={action}{fields}")
    };
    let requeued = post(
        &app,
        "/dead/default/selected",
        Some(&token),
        &form("requeue", &entries[..2]),
    )
    .await;
    assert_eq!(requeued.status, StatusCode::SEE_OTHER, "{}", requeued.body);
    let back = requeued.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.contains("done=2%20requeued"), "{back}");
    assert!(
        get(&app, &back).await.body.contains("2 requeued"),
        "the page says what was done"
    );
    let deleted = post(
        &app,
        "/dead/default/selected",
        Some(&token),
        &form("delete", &entries[2..]),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert!(client
        .broker()
        .dead_letters(&default, 10)
        .await
        .unwrap()
        .is_empty());
    let waiting = get(&app, "/queues/default").await.body;
    assert!(
        dead.iter()
            .filter(|id| waiting.contains(id.as_str()))
            .count()
            == 2,
        "two wait again"
    );
    let again = post(
        &app,
        "/dead/default/selected",
        Some(&token),
        &form("delete", &entries[..1]),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "gone already: {}",
        again.body
    );
    let none = post(
        &app,
        "/dead/default/selected",
        Some(&token),
        &format!("csrf={token}&do=delete"),
    )
    .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delayed_list_says_why_each_task_waits() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let later = PublishOptions::new().delay(Duration::from_secs(3600));
    let message = Client::message("stevedore.noop", vec![], Default::default(), &later).unwrap();
    client.publish(message).await.unwrap();
    let retried = PublishOptions::new()
        .retries(2)
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600));
    let message = Client::message(
        "stevedore.fail",
        vec!["x".into()],
        Default::default(),
        &retried,
    )
    .unwrap();
    let failing = client.publish(message).await.unwrap();
    let page = stevedore_tests::eventually("the retry in the delayed list", WAIT, || {
        let app = app.clone();
        let id = failing.id().to_owned();
        async move {
            let body = get(&app, "/queues/default").await.body;
            (body.contains(&id) && body.contains("retry 1 of 2")).then_some(body)
        }
    })
    .await;
    assert!(page.contains(">eta<"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_page_shows_its_steps_with_their_states_and_links() {
    use stevedore::Workflow;
    use stevedore_tests::tasks;
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let chain = Workflow::group([
        Workflow::chain([tasks::add::sig((1, 2)), tasks::add::partial((10,))]),
        tasks::add::sig((3, 4)).into(),
    ]);
    let handle = client.submit(chain).await.unwrap();
    // No worker yet: it is running, and listed.
    let list = get(&app, "/workflows").await;
    assert!(list.body.contains(handle.id()), "{}", list.body);
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    handle.wait(WAIT).await.unwrap();
    let page = get(&app, &format!("/workflows/{}", handle.id())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(">group<") && page.body.contains(">chain<"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("badge st-succeeded").count(),
        6,
        "3 tasks, group, chain, status: {}",
        page.body
    );
    let (_, from_api) = api(&app, &format!("/api/workflows/{}", handle.id())).await;
    let from_cli = cli_json(&redis, &["workflow", "show", handle.id(), "--json"]);
    assert_eq!(from_api, from_cli);
    let first = from_api["root"]["children"][0]["children"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let step_page = get(&app, &format!("/tasks/{first}")).await.body;
    assert!(
        step_page.contains(&format!("/workflows/{}", handle.id())),
        "a step links to its workflow"
    );
    let step_json = cli_json(&redis, &["task", &first, "--json"]);
    assert_eq!(step_json["workflow"], handle.id());
    assert!(
        page.body.contains(&format!("/tasks/{first}")),
        "steps link to their tasks"
    );
    assert!(!page.body.contains("→"), "results hidden");
    assert_eq!(
        get(&app, "/workflows/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_publishes_a_schedules_task_from_the_page_and_the_cli() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let added = stevedore_tests::run_cli(
        env!("CARGO_BIN_EXE_test-admin"),
        &redis.url(),
        &[
            "schedule",
            "add",
            "hourly",
            "stevedore.echo",
            "--every",
            "1h",
            "--args",
            "[7]",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let (_, next_before) = client.admin().schedule("hourly").await.unwrap();
    assert!(get(&app, "/schedules")
        .await
        .body
        .contains("/schedules/hourly/run"));
    let token = csrf_cookie(&app).await;
    let ran = post(
        &app,
        "/schedules/hourly/run",
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(ran.status, StatusCode::SEE_OTHER, "{}", ran.body);
    let to = ran.headers[header::LOCATION].to_str().unwrap().to_owned();
    let id = to.strip_prefix("/tasks/").unwrap().to_owned();
    let record = client
        .handle::<rmpv::Value>(id.as_str())
        .get(WAIT)
        .await
        .unwrap();
    assert_eq!(record, rmpv::Value::Array(vec![7.into()]));
    let from_cli = cli_json(&redis, &["schedule", "run", "hourly", "--json"]);
    assert_eq!(from_cli["name"], "hourly");
    assert_ne!(from_cli["id"].as_str().unwrap(), id);
    let (_, next_after) = client.admin().schedule("hourly").await.unwrap();
    assert_eq!(next_before, next_after, "its timing does not move");
    let missing = post(
        &app,
        "/schedules/nope/run",
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tasks_are_retried_one_or_several_at_once_from_the_pages() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let options = PublishOptions::new();
    let mut ids = Vec::new();
    for n in 0..3 {
        let args = vec![format!("failure {n}").into()];
        let message = Client::message("stevedore.fail", args, Default::default(), &options);
        ids.push(
            client
                .publish(message.unwrap())
                .await
                .unwrap()
                .id()
                .to_owned(),
        );
    }
    stevedore_tests::eventually("three failures in the history", WAIT, || {
        let json = cli_json(&redis, &["tasks", "--state", "failed", "--json"]);
        async move { (json["tasks"].as_array()?.len() == 3).then_some(()) }
    })
    .await;
    // No worker from here on: what is retried waits in the queue where the test can see it.
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());
    let task_page = get(&app, &format!("/tasks/{}", ids[0])).await;
    assert!(
        task_page.body.contains(&format!("/tasks/{}/retry", ids[0])),
        "{}",
        task_page.body
    );
    let token = csrf_cookie(&app).await;
    let form = format!("csrf={token}");
    let one = post(
        &app,
        &format!("/tasks/{}/retry", ids[0]),
        Some(&token),
        &form,
    )
    .await;
    assert_eq!(one.status, StatusCode::SEE_OTHER, "{}", one.body);
    let list = get(&app, "/tasks?state=failed").await;
    assert!(list.body.contains("Retry selected") && list.body.contains("data-select-all"));
    let picked = format!(
        "{form}&back=%2Ftasks%3Fstate%3Dfailed&entry={}&entry={}",
        ids[1], ids[2]
    );
    let several = post(&app, "/tasks/retry", Some(&token), &picked).await;
    assert_eq!(several.status, StatusCode::SEE_OTHER, "{}", several.body);
    let back = several.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(back, "/tasks?state=failed&done=2%20retried");
    assert!(get(&app, &back).await.body.contains("2 retried"));
    let queue = get(&app, "/queues/default").await.body;
    assert!(
        ids.iter().all(|id| queue.contains(id.as_str())),
        "all three wait again: {queue}"
    );
    let again = post(&app, "/tasks/retry", Some(&token), &picked).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "retried already: {}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_charts_each_queues_depth_the_workers_sample() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    // A worker samples the queues it reads as soon as it beats, then once a minute.
    stevedore_tests::eventually("the worker's first sample", WAIT, || {
        let app = app.clone();
        async move {
            let (_, json) = api(&app, "/api/metrics/queues").await;
            let last = json["minutes"].as_array()?.last()?.clone();
            (last["queues"]["default"].is_object() && last["queues"]["node:w1"].is_object())
                .then_some(())
        }
    })
    .await;
    let parked = PublishOptions::new().queue("parked");
    for n in 0..3 {
        let message = Client::message(
            "tests.add",
            vec![n.into(), 1.into()],
            Default::default(),
            &parked,
        );
        client.publish(message.unwrap()).await.unwrap();
    }
    client
        .broker()
        .sample_queues(&["parked".to_owned()])
        .await
        .unwrap();
    let (_, json) = api(&app, "/api/metrics/queues").await;
    let last = json["minutes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["queues"]["parked"]["waiting"], 3, "{json}");
    assert_eq!(json["minutes"].as_array().unwrap().len(), 60);
    let body = get(&app, "/").await.body;
    assert!(
        body.contains("Queues over the last hour")
            && body.contains("parked: waiting per minute, peak 3"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_task_is_cancelled_from_its_page_which_says_so() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let message = Client::message(
        "tests.add",
        vec![1.into(), 2.into()],
        Default::default(),
        &PublishOptions::new(),
    );
    let handle = client.publish(message.unwrap()).await.unwrap();
    let path = format!("/tasks/{}", handle.id());
    let page = get(&app, &path).await;
    assert!(
        page.body.contains(&format!("{path}/cancel")),
        "{}",
        page.body
    );
    let token = csrf_cookie(&app).await;
    let cancelled = post(
        &app,
        &format!("{path}/cancel"),
        Some(&token),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(
        cancelled.status,
        StatusCode::SEE_OTHER,
        "{}",
        cancelled.body
    );
    let back = cancelled.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(back.starts_with(&format!("{path}?done=")), "{back}");
    assert!(
        get(&app, &back).await.body.contains("cancel requested"),
        "the page says so"
    );
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &[]);
    let record = stevedore_tests::finished(&client, handle.id(), WAIT).await;
    assert_eq!(record.state(), stevedore::TaskState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_added_and_edited_from_the_dashboard_by_the_clis_rules() {
    use stevedore::schedule::Timing;
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let admin = client.admin();
    assert!(get(&app, "/schedules/new")
        .await
        .body
        .contains("name=\"when\""));
    let token = csrf_cookie(&app).await;
    let save = |fields: &str| {
        let body = format!("csrf={token}&{fields}");
        let app = app.clone();
        let token = token.clone();
        async move { post(&app, "/schedules", Some(&token), &body).await }
    };
    let added =
        save("name=nightly&task=stevedore.echo&queue=&kind=every&when=5m&args=%5B1%5D").await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let (stored, next) = admin.schedule("nightly").await.unwrap();
    assert_eq!(stored.timing, Timing::Every { ms: 300_000 });
    assert_eq!((stored.queue.as_str(), stored.args.len()), ("default", 1));
    assert!(next.is_some());
    let taken = save("name=nightly&task=stevedore.noop&kind=every&when=1m").await;
    assert_eq!(
        taken.status,
        StatusCode::CONFLICT,
        "a name is not silently replaced"
    );
    let form = get(&app, "/schedules/nightly/edit").await.body;
    assert!(
        form.contains("value=\"5m\"") && form.contains("value=\"[1]\""),
        "{form}"
    );
    let edited = save(
        "edit=yes&name=nightly&task=stevedore.noop&kind=cron&when=0+3+*+*+*&tz=Europe%2FBerlin",
    )
    .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let (changed, _) = admin.schedule("nightly").await.unwrap();
    assert_eq!(
        changed.created_at, stored.created_at,
        "an edit keeps its creation time"
    );
    assert_eq!(
        changed.timing,
        Timing::Cron {
            expr: "0 3 * * *".into(),
            tz: "Europe/Berlin".into()
        }
    );
    assert_eq!(changed.task, "stevedore.noop");
    for bad in [
        "name=b&task=t&kind=cron&when=not+a+cron",
        "name=b&task=t&kind=every&when=5m&args=%7Bnot",
        "name=b&task=t&kind=every&when=1ms",
        "name=b%20c&task=t&kind=every&when=5m",
    ] {
        let refused = save(bad).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            refused.body
        );
    }
    assert!(admin.schedule("b").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_page_shows_one_list_at_a_time_when_asked() {
    let redis = RedisServer::start();
    let (client, app) = dashboard(&redis, WebConfig::default()).await;
    let waiting = Client::message(
        "tests.add",
        vec![1.into(), 2.into()],
        Default::default(),
        &PublishOptions::new(),
    );
    let waiting = client.publish(waiting.unwrap()).await.unwrap();
    let later = PublishOptions::new().delay(Duration::from_secs(3600));
    let delayed = Client::message(
        "tests.add",
        vec![3.into(), 4.into()],
        Default::default(),
        &later,
    );
    let delayed = client.publish(delayed.unwrap()).await.unwrap();
    let all = get(&app, "/queues/default").await.body;
    assert!(all.contains(waiting.id()) && all.contains(delayed.id()));
    let only_waiting = get(&app, "/queues/default?state=waiting").await.body;
    assert!(only_waiting.contains(waiting.id()) && !only_waiting.contains(delayed.id()));
    let only_delayed = get(&app, "/queues/default?state=delayed").await.body;
    assert!(only_delayed.contains(delayed.id()) && !only_delayed.contains(waiting.id()));
    let retrying = get(&app, "/queues/default?state=retrying").await.body;
    assert!(
        !retrying.contains(delayed.id()),
        "a first attempt is not a retry"
    );
    let dead = get(&app, "/queues/default?state=dead").await;
    assert_eq!(dead.status, StatusCode::SEE_OTHER);
    assert_eq!(dead.headers[header::LOCATION], "/dead?queue=default");
    assert_eq!(
        get(&app, "/queues/default?state=nope").await.status,
        StatusCode::BAD_REQUEST
    );
}
