//! Myinfo onboarding: `flows` investors each through the whole flow against the Singpass
//! simulator (PAR, the authorize step, the callback with its token exchange, DPoP and the
//! nested JWE/JWS, the assessment, the opt-in), `concurrency` at a time; then the re-wrap
//! of every person key after a key rotation.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shared::app::consumer::pump_once;
use shared::app::myinfo::NOTICE_VERSION;
use shared::ports::queue::QueueName;
use tower::ServiceExt as _;

use super::notices::percentile;
use super::*;

/// The personas the flows take in turn: one passes, one goes to review.
const PERSONAS: [&str; 2] = ["S9812381D", "S9812384G"];

/// The simulator's authorize step, as the investor's browser takes it: answers the code
/// and state of the redirect.
async fn authorize(router: &axum::Router, url: &str, persona: &str) -> anyhow::Result<(String, String)> {
    let path = &url[url.find("/sim/singpass").ok_or_else(|| anyhow::anyhow!("not the simulator: {url}"))?..];
    let request = axum::http::Request::get(format!("{path}&persona={persona}")).body(axum::body::Body::empty())?;
    let answer = router.clone().oneshot(request).await?;
    let location = answer.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let value = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .and_then(shared::domain::uri::percent_decode)
            .ok_or_else(|| anyhow::anyhow!("no {name} in the redirect"))
    };
    Ok((value("code")?, value("state")?))
}

pub async fn myinfo_bench(platform: &shared::Platform, flows: usize, concurrency: usize) -> anyhow::Result<()> {
    // Investors with a second factor (level 2), as onboarding asks.
    let (accounts, second_factor) = (platform.accounts(), platform.second_factor());
    let mut users = Vec::with_capacity(flows);
    for i in 0..flows {
        let user = accounts.create_verified(&format!("myinfo-{i}@bench.sg"), "bench passphrase 2026", &[], 2).await?;
        second_factor.enroll_confirmed(&user.id).await?;
        users.push(user.id);
    }
    let router = platform.simulators.as_ref().ok_or_else(|| anyhow::anyhow!("an embedded platform"))?.singpass.router();
    let onboarding = Arc::new(platform.onboarding());
    let (users, next) = (Arc::new(users), Arc::new(AtomicUsize::new(0)));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(flows)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (users, next, latencies) = (users.clone(), next.clone(), latencies.clone());
        let (onboarding, router) = (onboarding.clone(), router.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(user) = users.get(i) else { return anyhow::Ok(()) };
                let began = Instant::now();
                let (url, _) = onboarding.start(user, None).await?;
                let (code, state) = authorize(&router, &url, PERSONAS[i % PERSONAS.len()]).await?;
                onboarding.callback(&code, &state).await?;
                onboarding.opt_in(user, NOTICE_VERSION).await?;
                latencies.lock().unwrap_or_else(|p| p.into_inner()).push(began.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sorted.sort_by(f64::total_cmp);

    // The data key rotates; every person key is wrapped again, a page per message.
    platform.keyring.rotate().await?;
    let rewrap = onboarding.rewrap(platform.queue.clone());
    let rewrap_started = Instant::now();
    let job = rewrap.start().await?;
    let handler = ::myinfo::handler(platform);
    loop {
        pump_once(platform.queue.as_ref(), QueueName::Myinfo, handler.as_ref(), Duration::from_millis(20)).await?;
        let report = rewrap.job(&job.id).await?.ok_or_else(|| anyhow::anyhow!("the job vanished"))?;
        if report.finished_at.is_some() {
            let rewrap_s = rewrap_started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({
                    "bench": "myinfo", "flows": flows, "concurrency": concurrency,
                    "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
                    "flows_per_s": (flows as f64 / elapsed * 10.0).round() / 10.0,
                    "flow_p50_ms": percentile(&sorted, 0.5), "flow_p99_ms": percentile(&sorted, 0.99),
                    "rewrapped": report.rewrapped, "rewrap_s": (rewrap_s * 1000.0).round() / 1000.0,
                    "rewrap_keys_per_s": (report.rewrapped as f64 / rewrap_s).round(),
                    "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
                })
            );
            return Ok(());
        }
    }
}
