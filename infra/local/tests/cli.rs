//! `cargo run -p local` as a newcomer runs it: it prints where it listens, serves, keeps
//! its data in the data directory, and shuts down cleanly on Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_runner_serves_health_and_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .args(["--port", "0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening =
        lines.by_ref().map_while(Result::ok).find(|l| l.contains("listening on")).expect("prints its address");
    let url = listening.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();

    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["backend"].as_str()), (Some("ok"), Some("embedded")));
    assert!(data.path().join("store").is_dir());
    assert!(data.path().join("keyring.json").is_file());
    // Demo users for every role, with their credentials.
    let seed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("seed.json")).unwrap()).unwrap();
    let users = seed["users"].as_array().unwrap();
    for role in ["super-admin", "co-operator", "member-management", "deal", "finance", "issuer"] {
        assert!(users.iter().any(|u| u["roles"][0] == role && u["totp_secret"].is_string()), "{role}");
    }
    for level in 1..=3 {
        assert!(users.iter().any(|u| u["roles"].as_array().unwrap().is_empty() && u["level"] == level));
    }
    let investor = users.iter().find(|u| u["level"] == 1).unwrap();
    let login = reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&serde_json::json!({"email": investor["email"], "password": investor["password"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop within 10 s of Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("Shutting down")), "{rest:?}");
}
