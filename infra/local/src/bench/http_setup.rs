//! Data for the HTTP load test (wrk): investors with tokens and open deals.

use super::*;

pub(super) async fn http_setup(
    platform: &shared::Platform,
    investors: usize,
    deals: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use shared::domain::ledger::{Account, Kind, Transfer};
    use shared::domain::session::SessionPolicy;

    let run = ulid::Ulid::new().to_string().to_lowercase();
    let mut deal_ids = Vec::with_capacity(deals);
    for d in 0..deals {
        let id = format!("bench-{run}-{d}");
        super::subscriptions::open_bench_deal(platform, &id).await?;
        deal_ids.push(json!({ "deal": id }));
    }
    let accounts = platform.accounts();
    let deposits = platform.deposit_accounts();
    let ledger = platform.ledger();
    let omnibus = Account::of(Kind::Omnibus, "bank", "SGD");
    let omnibus_id = omnibus.id.clone();
    ledger.open(omnibus).await?;
    let sessions = platform.sessions(SessionPolicy::default()).await?;
    let mut tokens = Vec::with_capacity(investors);
    for i in 0..investors {
        let user = accounts
            .create_verified(&format!("wrk-{run}-{i}@bench.example.sg"), "benchmark passphrase 2026", &[], 3)
            .await?;
        let account = deposits.account_for(&user.id).await?;
        ledger
            .submit(&Transfer::single(
                format!("wrk-fund-{run}-{i}"),
                &omnibus_id,
                &account.account_id,
                100_000_000,
                "SGD",
                1,
            ))
            .await?;
        tokens.push(json!({ "token": sessions.start_after_second_factor(&user).await?.access_token }));
    }
    std::fs::write(out, serde_json::to_vec(&json!({ "deals": deal_ids, "investors": tokens }))?)?;
    println!(
        "{}",
        json!({"bench": "http-setup", "deals": deals, "investors": investors, "out": out.display().to_string()})
    );
    Ok(())
}
