//! Traces across the message: the producer's span (recorded here by an in-memory exporter) is
//! the parent of every run's span, which the worker process exports over OTLP/HTTP to a
//! receiver in this test; across a retry, and for the runs a beat fires.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as WireKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prost::Message as _;
use stevedore::PublishOptions;
use stevedore_tests::{
    eventually, run_cli, tasks, test_admin_bin, test_worker_bin, KillOnDrop, RedisServer,
    WorkerProcess,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(30);

/// The spans this process records (the producer's side), through a global subscriber.
fn producer_spans() -> &'static InMemorySpanExporter {
    static SPANS: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    let (exporter, _) = SPANS.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
        tracing_subscriber::registry().with(layer).init();
        (exporter, provider)
    });
    exporter
}

/// An OTLP/HTTP receiver: the spans other processes export, each with its service name.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    /// Serves `POST /v1/traces` on a free port; returns the endpoint to export to.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        endpoint
    }

    /// The spans received named `name` whose `attribute` is `value`.
    fn find(&self, name: &str, attribute: &str, value: &str) -> Vec<(String, Span)> {
        let spans = self.spans.lock().unwrap();
        (spans.iter())
            .filter(|(_, s)| s.name == name && wire_attribute(&s.attributes, attribute) == value)
            .cloned()
            .collect()
    }
}

async fn receive(State(receiver): State<Receiver>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut spans = receiver.spans.lock().unwrap();
    for resource in request.resource_spans {
        let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
        let service = wire_attribute(&attributes, "service.name");
        for scope in resource.scope_spans {
            spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// The value of attribute `key` as text (empty when absent).
fn wire_attribute(attributes: &[KeyValue], key: &str) -> String {
    let value = attributes.iter().find(|kv| kv.key == key);
    match value.and_then(|kv| kv.value.as_ref()?.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// The environment that makes a stevedore binary export at once to a receiver.
struct ExportEnv([(&'static str, String); 2]);

impl ExportEnv {
    fn borrowed(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// A receiver, a redis-server, and the environment that exports to the receiver.
async fn exporting() -> (Receiver, RedisServer, ExportEnv) {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let env = ExportEnv([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ]);
    (receiver, RedisServer::start(), env)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The send span recorded here for message `id`.
fn send_span_of(id: &str) -> SpanData {
    let spans = producer_spans().get_finished_spans().unwrap();
    let sent = spans.into_iter().find(|s| {
        s.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.message.id" && kv.value.as_str() == id)
    });
    sent.unwrap_or_else(|| panic!("no send span for {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_a_child_of_the_producers_span_across_a_retry() {
    producer_spans();
    let (receiver, redis, env) = exporting().await;
    let _w = WorkerProcess::start_with_env(test_worker_bin!(), &redis, "w", &[], &env.borrowed());
    let client = redis.stevedore().await;

    let request = tracing::info_span!("request");
    let handle = tasks::fail_times::apply_async(&client, (1,), PublishOptions::new())
        .instrument(request.clone())
        .await
        .unwrap();
    assert_eq!(handle.get(WAIT).await.unwrap(), 2, "succeeded on its retry");
    let caller = request.context().span().span_context().span_id();
    drop(request);

    let sent = send_span_of(handle.id());
    assert_eq!(sent.name, "send default");
    assert_eq!(sent.span_kind, SpanKind::Producer);
    assert_eq!(sent.parent_span_id, caller, "a child of the caller's span");
    let runs = eventually("both runs' spans exported", WAIT, || async {
        let runs = receiver.find("process default", "messaging.message.id", handle.id());
        (runs.len() == 2).then_some(runs)
    })
    .await;
    let mut attempts = Vec::new();
    for (service, run) in &runs {
        assert_eq!(service, "test-worker");
        assert_eq!(
            hex(&run.trace_id),
            format!("{:032x}", sent.span_context.trace_id())
        );
        assert_eq!(
            hex(&run.parent_span_id),
            format!("{:016x}", sent.span_context.span_id())
        );
        assert_eq!(run.kind, WireKind::Consumer as i32);
        assert_eq!(
            wire_attribute(&run.attributes, "messaging.system"),
            "stevedore"
        );
        assert_eq!(
            wire_attribute(&run.attributes, "messaging.destination.name"),
            "default"
        );
        assert_eq!(
            wire_attribute(&run.attributes, "stevedore.task.name"),
            "tests.fail_times"
        );
        assert!(!wire_attribute(&run.attributes, "messaging.consumer.group.name").is_empty());
        attempts.push(wire_attribute(&run.attributes, "stevedore.task.attempt"));
    }
    attempts.sort();
    assert_eq!(attempts, ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beat_fired_run_is_a_child_of_the_beats_send_span() {
    let (receiver, redis, env) = exporting().await;
    let env = env.borrowed();
    let _w = WorkerProcess::start_with_env(test_worker_bin!(), &redis, "w", &[], &env);
    let _beat = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &redis.url(), "--lease", "1s"])
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let added = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &[
            "schedule",
            "add",
            "traced",
            "tests.count_run",
            "--every",
            "300ms",
        ],
    );
    assert!(added.status.success(), "{added:?}");

    let (sent, run) = eventually(
        "a fired run's span under beat's send span",
        WAIT,
        || async {
            let sends = receiver.find("send default", "stevedore.task.name", "tests.count_run");
            sends.into_iter().find_map(|(service, sent)| {
                assert_eq!(service, "test-beat");
                let id = wire_attribute(&sent.attributes, "messaging.message.id");
                let runs = receiver.find("process default", "messaging.message.id", &id);
                runs.into_iter().next().map(|(_, run)| (sent, run))
            })
        },
    )
    .await;
    assert_eq!(sent.kind, WireKind::Producer as i32);
    assert_eq!(run.trace_id, sent.trace_id);
    assert_eq!(run.parent_span_id, sent.span_id);
}
