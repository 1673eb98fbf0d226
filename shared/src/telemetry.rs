//! Logging: JSON lines in Lambda (CloudWatch reads them as structured logs), readable
//! lines elsewhere; the level from `RUST_LOG`, `info` by default.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    // Logs go to stderr: stdout stays for what a command prints (benchmarks, documents).
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if in_lambda {
        builder.json().with_current_span(true).with_span_list(false).without_time().with_ansi(false).try_init()
    } else {
        builder.try_init()
    };
}
