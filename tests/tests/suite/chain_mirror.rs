//! The chain mirror under faults: the chain simulator fails, times out after committing,
//! receives records twice and answers late; once it recovers, its balances equal the
//! ledger's for every mirrored account.

use platform_tests::{eventually, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_chain_faults_the_chains_balances_equal_the_ledgers() {
    let app = spawn_app().await;
    for (kind, times) in [("fail", 3), ("timeout_after_commit", 2), ("duplicate", 2), ("delay", 2), ("fail", 2)] {
        let fault = json!({"partner": "chain", "kind": kind, "times": times, "delay_ms": 30});
        assert_eq!(app.post("/sim/faults", fault).await.0, StatusCode::NO_CONTENT);
    }
    let mut investors = Vec::new();
    for (i, amount) in ["120.00", "75.50", "300.00"].iter().enumerate() {
        investors.push(app.funded_investor(&format!("inv{i}@example.sg"), amount).await);
    }
    for (i, (_, token)) in investors.iter().enumerate() {
        let (status, w) = app.withdraw(token, "w", &format!("{}.25", 10 * (i + 1))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{w}");
    }
    let mirror = app.platform.chain_mirror();
    eventually("the outbox is delivered and the payouts settled", || async {
        let mut settled = true;
        for (_, token) in &investors {
            let (posted, available) = app.sgd(token).await;
            settled &= posted == available;
        }
        settled && !mirror.pending().await.unwrap()
    })
    .await;

    let calls: Value = app.client.get(app.url("/sim/chain/calls")).send().await.unwrap().json().await.unwrap();
    let outcomes: Vec<&str> =
        calls["items"].as_array().unwrap().iter().map(|c| c["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.contains(&"failed (injected)") && outcomes.contains(&"duplicate"), "{outcomes:?}");

    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    for (user_id, token) in &investors {
        let account = format!("deposit:{user_id}:SGD");
        let (_, ledger) = app.get_as(&format!("/v1/admin/accounts/{account}"), &finance).await;
        let ledger_cents: i128 = ledger["posted"].as_str().unwrap().replace('.', "").parse().unwrap();
        let chain: Value = app
            .client
            .get(app.url(&format!("/sim/chain/accounts/{account}/balance?asset=SGD")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(chain["balance"].as_str().unwrap().parse::<i128>().unwrap(), ledger_cents, "{account}");
        assert!(ledger_cents > 0, "{token}");
    }
}
