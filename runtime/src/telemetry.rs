//! What a stevedore binary says about itself ([`init_logging`]):
//!
//! 1. Logs to stderr, as text or one JSON object per line, at a level `RUST_LOG` can change.
//! 2. With the `otel` feature, spans exported over OTLP/HTTP (protobuf) when an endpoint is
//!    configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), headers, timeout, `OTEL_SERVICE_NAME` (default:
//!    the binary's file name), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//!    `OTEL_BSP_*`. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
//!    Spans at INFO and above are exported whatever the log level: a worker that logs only
//!    warnings still traces its runs.
//! 3. [`Telemetry`], the guard that flushes the spans not yet exported when it is dropped.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::LogFormat;

/// Keeps the exporter of a binary's spans; dropping it flushes them (at the end of `main`).
#[derive(Debug, Default)]
#[must_use = "dropping it at once stops exporting spans"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: spans not exported at exit: {error}");
            }
        }
    }
}

/// Logs to stderr at `level` (`info` for long-lived binaries, `warn` for the admin CLI) unless
/// `RUST_LOG` says otherwise, as text or one JSON object per line; with the `otel` feature and
/// an OTLP endpoint configured, also exports spans. Keep the returned guard until exit.
pub fn init_logging(level: &str, format: LogFormat) -> Telemetry {
    init_logging_with(level, format, Vec::new())
}

/// [`init_logging`], with more layers beside the log's (the worker's capture of each task's
/// own lines).
pub fn init_logging_with(level: &str, format: LogFormat, extra: Vec<BoxedLayer>) -> Telemetry {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: BoxedLayer = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers: Vec<BoxedLayer> = vec![fmt.with_filter(filter).boxed()];
    layers.extend(extra);
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut telemetry = Telemetry::default();
    #[cfg(feature = "otel")]
    match otel::layer() {
        Ok(Some((layer, provider))) => {
            layers.push(layer);
            telemetry.provider = Some(provider);
        }
        Ok(None) => {}
        Err(error) => eprintln!("warning: not exporting spans: {error:#}"),
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    telemetry
}

/// What `RUST_LOG` lets through: a default level and `target=level` overrides, e.g.
/// `warn,stevedore_worker=debug` (targets match by prefix); `level` when it is unset or not
/// in that form (a warning says so). The full `EnvFilter` syntax (span and field filters) is
/// not taken: its regex engine was a tenth of the worker's code (issue 22, idle RSS).
fn log_filter(rust_log: Option<&str>, level: &str) -> Targets {
    let fallback = || level.parse::<Targets>().unwrap_or_default();
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => fallback(),
        Some(directives) => directives.parse().unwrap_or_else(|error| {
            eprintln!("warning: RUST_LOG={directives:?} ignored ({error}); logging at {level}");
            fallback()
        }),
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::Layer;

    /// The exporting layer (spans at INFO and above), or `None` when no endpoint is set or the
    /// variables turn it off.
    pub(super) fn layer() -> anyhow::Result<Option<(super::BoxedLayer, SdkTracerProvider)>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        if disabled || endpoint.is_none() {
            return Ok(None);
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(other) = protocol.filter(|p| p != "http/protobuf") {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other}: this build speaks http/protobuf only \
                 (unset it, or point the endpoint at the collector's HTTP port, 4318)"
            );
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service_name());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("stevedore");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(LevelFilter::INFO);
        Ok(Some((layer.boxed(), provider)))
    }

    /// The running binary's file name (`worker`, `beat`, `stevedore`, or the app's own).
    fn service_name() -> String {
        std::env::args_os()
            .next()
            .and_then(|arg0| {
                let path = std::path::PathBuf::from(arg0);
                Some(path.file_name()?.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "stevedore".into())
    }
}

/// One layer of the subscriber.
/// A layer of the process's subscriber.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_the_default_level_and_overrides_by_target_prefix() {
        let filter = log_filter(Some("warn,stevedore_worker=debug"), "info");
        assert!(filter.would_enable("stevedore_worker::fetcher", &Level::DEBUG));
        assert!(!filter.would_enable("stevedore_worker::fetcher", &Level::TRACE));
        assert!(filter.would_enable("redis", &Level::WARN));
        assert!(!filter.would_enable("redis", &Level::INFO));
    }

    #[test]
    fn unset_empty_or_unreadable_rust_log_falls_back_to_the_binary_level() {
        for rust_log in [None, Some(""), Some("stevedore=loud")] {
            let filter = log_filter(rust_log, "info");
            assert!(
                filter.would_enable("stevedore", &Level::INFO),
                "{rust_log:?}"
            );
            assert!(
                !filter.would_enable("stevedore", &Level::DEBUG),
                "{rust_log:?}"
            );
        }
    }
}
