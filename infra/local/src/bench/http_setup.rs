//! Data for the HTTP load test (wrk): investors with tokens and open deals.

use super::*;

pub(super) async fn http_setup(
    platform: &shared::Platform,
    investors: usize,
    deals: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use shared::app::accounts::Accounts;
    use shared::app::deposits::DepositAccounts;
    use shared::app::ledger::Ledger;
    use shared::app::sessions::Sessions;
    use shared::domain::ledger::{Account, Kind, Transfer};
    use shared::domain::session::SessionPolicy;

    let run = ulid::Ulid::new().to_string().to_lowercase();
    let mut deal_ids = Vec::with_capacity(deals);
    for d in 0..deals {
        let id = format!("bench-{run}-{d}");
        super::subscriptions::open_bench_deal(platform, &id).await?;
        deal_ids.push(json!({ "deal": id }));
    }
    let accounts = Accounts::new(platform);
    let deposits = DepositAccounts::for_platform(platform);
    let ledger = Ledger::for_platform(platform);
    let omnibus = Account::of(Kind::Omnibus, "bank", "SGD");
    let omnibus_id = omnibus.id.clone();
    ledger.open(omnibus).await?;
    let sessions = Sessions::for_platform(platform, SessionPolicy::default()).await?;
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
