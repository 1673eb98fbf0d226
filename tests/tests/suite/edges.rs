//! Input edges: cursors that no list gave out, and the framework's own rejections, answer
//! a 400 problem naming what is wrong, never a 500.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_stores!(a_forged_cursor_is_a_400_problem_naming_the_cursor_on_every_list);

/// A cursor in the format the API gives out, pointing into someone else's partition.
fn forged(pk: &str, sk: &str, index: Option<(&str, &str)>) -> String {
    let mut cursor = json!({"key": {"pk": pk, "sk": sk}});
    if let Some((ipk, isk)) = index {
        cursor["index"] = json!({"pk": ipk, "sk": isk});
    }
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap())
}

async fn a_forged_cursor_is_a_400_problem_naming_the_cursor_on_every_list(app: TestApp) {
    let (_, investor) = app.funded_investor("ina@example.sg", "10.00").await;
    let (victim, _) = app.funded_investor("victim@example.sg", "10.00").await;
    let (_, admin) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (_, accredited) = app.accredited_investor("ada@example.sg").await;
    let someone_elses = [
        forged(&format!("ACCOUNT#deposit:{victim}:SGD"), "ENTRY#00000000000000000001", None),
        forged("USER#x", "PROFILE", Some(("ELSEWHERE", "x"))),
        forged("USER#x", "PROFILE", None),
    ];
    let lists = [
        ("/v1/accounts/me/statement", &investor),
        ("/v1/me/subscriptions", &investor),
        ("/v1/deals", &accredited),
        ("/v1/admin/users", &admin),
        ("/v1/admin/audit", &admin),
        ("/v1/admin/change-requests", &admin),
    ];
    for (path, token) in lists {
        for cursor in someone_elses.iter().map(String::as_str).chain(["not-a-cursor"]) {
            let response =
                app.client.get(app.url(path)).query(&[("cursor", cursor)]).bearer_auth(token).send().await.unwrap();
            let status = response.status();
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            let problem: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {cursor}: {problem}");
            assert_eq!(content_type, "application/problem+json");
            assert_eq!(problem["errors"][0]["field"], "cursor", "{path}: {problem}");
        }
    }
}

/// axum's own rejections (a path segment that is not UTF-8, a query parameter given twice)
/// answer problem+json naming where the fault is, like every other 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_path_or_query_parameter_is_a_400_problem() {
    let app = platform_tests::spawn_app().await;
    let (_, investor) = app.funded_investor("ina@example.sg", "10.00").await;
    let (_, accredited) = app.accredited_investor("ada@example.sg").await;
    for (path, field) in [
        ("/v1/deals/%FF", "path"),
        ("/v1/deals?state=%FF", "state"),
        ("/v1/deals?state=open&state=closed", "query"),
        ("/v1/accounts/me/statement?asset=SGD&asset=DABS", "query"),
        ("/v1/accounts/me/withdrawals/%C3%28", "path"),
    ] {
        // Offer terms are for accredited investors only (SFA s275).
        let token = if path.starts_with("/v1/deals") { &accredited } else { &investor };
        let response = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let problem: Value = response.json().await.unwrap();
        assert_eq!((status, content_type.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{path}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
}
