//! Sentinel: one master, one replica, three sentinels. A failover forced mid-run is followed
//! by workers and producers (a demoted master's READONLY replies make them reconnect through
//! the sentinels), and nothing Redis acknowledged is lost. A deployment speaking only TLS works
//! through a `rediss+sentinel://` URL.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use stevedore::PublishOptions;
use stevedore_tests::sentinel::{SentinelSetup, SENTINEL_PASSWORD};
use stevedore_tests::{tasks, test_worker_bin, unrecorded_within, WorkerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_mid_run_loses_no_acknowledged_task() {
    let setup = SentinelSetup::start();
    let env = [("STEVEDORE_WAIT_REPLICAS", "1")];
    let args = [
        "--max-workers",
        "16",
        "--heartbeat",
        "200ms",
        "--lost-after",
        "2s",
    ];
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|i| {
            WorkerProcess::start_at(
                test_worker_bin!(),
                &setup.url(),
                &format!("w{i}"),
                &args,
                &env,
            )
        })
        .collect();
    let mut config = stevedore::ClientConfig::new(setup.url(), "stevedore");
    config.replicas_to_ack = 1;
    let client = stevedore::Client::with_config(config).await.unwrap();
    let first_master = setup.master_port();

    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    let mut new_master = None;
    for batch in 0..30 {
        let messages: Vec<_> = (0..50)
            .map(|_| {
                tasks::count_run::message(
                    (),
                    &PublishOptions::new()
                        .retries(20)
                        .backoff(Duration::from_millis(100), Duration::from_secs(1)),
                )
                .unwrap()
            })
            .collect();
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        match client.publish_many(messages).await {
            Ok(_) => acknowledged.extend(ids),
            Err(_) => refused += 1,
        }
        if batch == 10 {
            new_master = Some(setup.failover());
        }
    }
    let new_master = new_master.unwrap();
    assert_ne!(new_master, first_master);

    let left = unrecorded_within(&client, &acknowledged, Duration::from_secs(90)).await;
    for id in left.iter().take(5) {
        let state = client.task(id).await.map(|r| r.state());
        writeln!(
            std::io::stderr().lock(),
            "no success record: {id} {state:?}"
        )
        .unwrap();
    }
    writeln!(
        std::io::stderr().lock(),
        "sentinel failover: {} acknowledged, {refused} batches refused, {} without a success \
         record, master {first_master} -> {new_master}",
        acknowledged.len(),
        left.len()
    )
    .unwrap();
    assert!(
        acknowledged.len() >= 1000,
        "most publishes should be acknowledged"
    );
    assert!(
        left.is_empty(),
        "acknowledged tasks without a success record: {}",
        left.len()
    );
    assert_eq!(
        setup.role_of(first_master),
        "slave",
        "the old master follows the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_speaking_only_tls_with_locked_sentinels_runs_tasks_via_rediss_sentinel() {
    let setup = SentinelSetup::start_tls();
    assert!(setup.url().starts_with("rediss+sentinel://"));
    let ca = setup.ca_file().unwrap().display().to_string();
    let _worker = WorkerProcess::start_at(
        test_worker_bin!(),
        &setup.url(),
        "w",
        &[],
        &[
            ("STEVEDORE_REDIS_CA_FILE", &ca),
            ("STEVEDORE_SENTINEL_PASSWORD", SENTINEL_PASSWORD),
        ],
    );
    let client = stevedore::Client::with_config(setup.config("stevedore"))
        .await
        .unwrap();
    let messages: Vec<_> = (0..20)
        .map(|_| tasks::count_run::message((), &PublishOptions::new()).unwrap())
        .collect();
    let ids: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    client.publish_many(messages).await.unwrap();
    let left = unrecorded_within(&client, &ids, Duration::from_secs(30)).await;
    assert!(left.is_empty(), "tasks without a success record: {left:?}");

    // Without the CA, the sentinels' certificate is refused; without the sentinels' password,
    // they refuse to answer; each in one line.
    let mut no_password = setup.config("stevedore");
    no_password.sentinel_password = None;
    let mut no_ca = setup.config("stevedore");
    no_ca.tls_ca_file = None;
    for (config, hint) in [
        (no_password, "STEVEDORE_SENTINEL_PASSWORD"),
        (no_ca, "STEVEDORE_REDIS_CA_FILE"),
    ] {
        let Err(refused) = stevedore::Client::with_config(config).await else {
            panic!("a client without the CA or the sentinels' password connected");
        };
        let refused = refused.to_string();
        assert!(
            !refused.contains('\n') && refused.contains(hint),
            "{refused}"
        );
    }
}
