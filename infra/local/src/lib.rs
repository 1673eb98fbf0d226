//! The whole platform in one process: every HTTP router on one port, the queue consumers
//! and the schedules in-process, on whichever `Platform` it is given (embedded by default).

pub mod bench;
pub mod seed;
pub mod sim;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use shared::Platform;
use shared::app::consumer::{BatchHandler, pump};
use shared::ports::queue::QueueName;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Every HTTP function's routes, with the shared routes and layers, and the OpenAPI
/// document merged from all of them.
pub fn app(platform: &Platform) -> Router {
    let mut routes = Router::new()
        .merge(auth::routes(platform))
        .merge(offering::routes(platform))
        .merge(accounts::routes(platform))
        .merge(settlement::routes(platform))
        .merge(reconcile::routes(platform))
        .merge(myinfo::routes(platform))
        .merge(matching::routes(platform))
        .merge(notify::routes(platform, &templates()));
    if let Some(simulators) = &platform.simulators {
        routes = routes.merge(sim::routes(simulators.clone()));
    }
    shared::http::service(routes, platform, docs())
}

/// How often the ledger's follow-ups run (the chain outbox, expired holds, payouts to
/// instruct again); in AWS the table's stream and a one-minute schedule wake them.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How often the local runner asks whether a market's session ended.
const CLOSE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole API's OpenAPI document, merged from every HTTP function.
pub fn docs() -> serde_json::Value {
    let document = shared::http::openapi::document([
        auth::openapi(),
        offering::openapi(),
        accounts::openapi(),
        settlement::openapi(),
        reconcile::openapi(),
        myinfo::openapi(),
        matching::openapi(),
        notify::openapi(),
    ]);
    shared::http::openapi::complete(serde_json::to_value(document).unwrap_or_default())
}

/// The queue consumers, as Lambda's event sources would run them.
fn consumers(platform: &Platform) -> Vec<(QueueName, Arc<dyn BatchHandler>)> {
    vec![
        (allocation::QUEUE, allocation::handler(platform)),
        (settlement::QUEUE, settlement::handler(platform)),
        (notify::QUEUE, notify::handler(platform, &templates())),
        (reconcile::QUEUE, reconcile::handler(platform)),
        (myinfo::QUEUE, myinfo::handler(platform)),
        (matching::QUEUE, matching::handler(platform)),
    ]
}

/// The notify function's templates and fonts, loaded once per process.
fn templates() -> notify::Templates {
    static TEMPLATES: std::sync::OnceLock<notify::Templates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(notify::Templates::new).clone()
}

/// Resolves once a stop was asked for.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A running platform; [`Running::stop`] shuts it down cleanly.
pub struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Stops the queue consumers and the sweep only.
    stop_workers: watch::Sender<bool>,
    workers: JoinSet<()>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops accepting requests, lets in-flight ones and queue batches finish, and waits.
    pub async fn stop(mut self) {
        self.stop_workers().await;
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the queue consumers and the sweep (the API keeps serving) once their current
    /// batch is done: tests then drive the queues themselves.
    pub async fn stop_workers(&mut self) {
        let _ = self.stop_workers.send(true);
        while self.workers.join_next().await.is_some() {}
    }
}

/// Starts the API on `addr` (port 0 picks a free one), the consumers and the schedules.
pub async fn start(platform: Platform, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let (stop_workers, workers_stopped) = watch::channel(false);
    let (mut tasks, mut workers) = (JoinSet::new(), JoinSet::new());

    if let Some(simulators) = &platform.simulators {
        simulators.bank.target(format!("http://{addr}/v1/webhooks/bank"));
        simulators.custody.target(format!("http://{addr}/v1/webhooks/custody"));
    }
    let app = app(&platform);
    let mut until = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move { stop_requested(&mut until).await };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "HTTP server failed");
        }
    });

    for (queue, handler) in consumers(&platform) {
        workers.spawn(pump(platform.queue.clone(), queue, handler, workers_stopped.clone()));
    }

    let workers_stopped_close = workers_stopped.clone();
    let mut until = workers_stopped;
    let sweeper = settlement::Sweeper::new(&platform);
    let notices = platform.notices();
    workers.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {
                    if let Err(error) = sweeper.run_once().await {
                        tracing::warn!(%error, "sweep incomplete; retrying");
                    }
                    // The relay the table's stream wakes in AWS.
                    if let Err(error) = notices.relay(notify::RELAY_BATCH).await {
                        tracing::warn!(%error, "notice relay failed; retrying");
                    }
                }
                _ = stop_requested(&mut until) => return,
            }
        }
    });

    // The schedule that closes each market's day (every five minutes in AWS).
    let mut until = workers_stopped_close;
    let trading = platform.trading();
    workers.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CLOSE_EVERY) => {
                    if let Err(error) = trading.close_due().await {
                        tracing::warn!(%error, "closing the markets failed; retrying");
                    }
                }
                _ = stop_requested(&mut until) => return,
            }
        }
    });

    let mut until = stopped.clone();
    let audited = platform.clone();
    tasks.spawn(async move {
        loop {
            let now = audited.clock.now();
            let next = next_audit_check_after(now);
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    if let Err(error) = reconcile::check_audit(&audited).await {
                        tracing::error!(%error, "the audit log check failed");
                    }
                }
                _ = stop_requested(&mut until) => return,
            }
        }
    });

    let mut until = stopped.clone();
    let monthly = platform.clone();
    tasks.spawn(async move {
        loop {
            let now = monthly.clock.now();
            let wait = (notify::statements::next_run_after(now) - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    if let Err(error) = notify::statements_due(&monthly).await {
                        tracing::error!(%error, "the monthly statements could not be started");
                    }
                }
                _ = stop_requested(&mut until) => return,
            }
        }
    });

    let mut until = stopped;
    let scheduled = platform.clone();
    tasks.spawn(async move {
        loop {
            let now = scheduled.clock.now();
            let next = reconcile::next_run_after(now);
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    if let Err(error) = reconcile::run(&scheduled, reconcile::Trigger { cut_off: Some(next) }).await {
                        tracing::error!(%error, "scheduled reconciliation failed");
                    }
                }
                _ = stop_requested(&mut until) => return,
            }
        }
    });

    Ok(Running { addr, stop, stop_workers, workers, tasks })
}

/// The audit log's check, daily at 00:30 UTC as the schedule in `template.yaml` runs it.
fn next_audit_check_after(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let today = now.date_naive().and_hms_opt(0, 30, 0).unwrap_or_default().and_utc();
    if today > now { today } else { today + chrono::TimeDelta::days(1) }
}
