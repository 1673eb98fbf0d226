//! `cargo run -p local` as a newcomer runs it: it prints where it listens, serves, keeps
//! its data in the data directory, and shuts down cleanly on Ctrl-C.

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
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).expect("prints its address").to_owned();

    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["backend"].as_str()), (Some("ok"), Some("embedded")));
    assert!(data.path().join("store.redb").is_file());
    assert!(data.path().join("keyring.json").is_file());

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
