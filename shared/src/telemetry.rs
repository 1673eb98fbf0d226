//! Logging: JSON lines in Lambda (CloudWatch reads them as structured logs), readable
//! lines elsewhere; the level from `RUST_LOG` (`info` by default), as targets and levels
//! (`warn`, `info,shared::app=debug`): no regular expressions, which keeps them out of
//! every function's binary.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `RUST_LOG` names; `info` when it is unset or unreadable.
fn filter() -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    std::env::var("RUST_LOG").ok().and_then(|spec| spec.parse().ok()).unwrap_or_else(info)
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    // Logs go to stderr: stdout stays for what a command prints (benchmarks, documents).
    let format = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter());
    let _ = if in_lambda {
        let json = format.json().with_current_span(true).with_span_list(false).without_time().with_ansi(false);
        registry.with(json).try_init()
    } else {
        registry.with(format).try_init()
    };
}

/// Writes `metrics` (name, value) as one line of CloudWatch's embedded metric format to
/// standard output, in the namespace `METRICS_NAMESPACE`: CloudWatch turns the log line
/// into metrics, so alarms need no API call and no permission. Nothing outside Lambda.
pub fn metrics(metrics: &[(&str, u64)], now: chrono::DateTime<chrono::Utc>) {
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let Some(namespace) = std::env::var("METRICS_NAMESPACE").ok().filter(|_| in_lambda) else { return };
    println!("{}", metrics_line(&namespace, metrics, now));
}

/// The embedded-metric-format line for `metrics`.
pub fn metrics_line(namespace: &str, metrics: &[(&str, u64)], now: chrono::DateTime<chrono::Utc>) -> String {
    let names: Vec<serde_json::Value> = metrics.iter().map(|(name, _)| serde_json::json!({ "Name": name })).collect();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{ "Namespace": namespace, "Dimensions": [[]], "Metrics": names }],
        }
    });
    for (name, value) in metrics {
        line[*name] = serde_json::json!(value);
    }
    line.to_string()
}
