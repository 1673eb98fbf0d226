//! Sign-in: password checks, token refreshes and access-token verification.

use super::*;

pub(super) async fn auth_bench(
    backend: &str,
    platform: &shared::Platform,
    refreshes: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::domain::session::SessionPolicy;

    let accounts = platform.accounts();
    let password = "benchmark passphrase 2026";
    accounts.create_verified("load-test@example.sg", password, &[], 1).await?;
    let sessions = Arc::new(platform.sessions(SessionPolicy::default()).await?);

    // The password check alone (Argon2id at OWASP parameters), for a known address and an
    // unknown one: they must cost the same, or timing would tell who has an account.
    let checks = 20;
    let started = Instant::now();
    for _ in 0..checks {
        accounts.check_password("load-test@example.sg", password).await?;
    }
    report("auth", backend, "password_check_known_email", 1, checks, started);
    let started = Instant::now();
    for _ in 0..checks {
        let refused = accounts.check_password("nobody-here@example.sg", password).await;
        anyhow::ensure!(refused.is_err(), "an unknown address logged in");
    }
    report("auth", backend, "password_check_unknown_email", 1, checks, started);

    // A whole login: the check and a new session with its tokens.
    let started = Instant::now();
    let mut user = None;
    for _ in 0..checks {
        let found = accounts.check_password("load-test@example.sg", password).await?;
        sessions.start(&found).await?;
        user = Some(found);
    }
    report("auth", backend, "login", 1, checks, started);
    let user = user.ok_or_else(|| anyhow::anyhow!("no login"))?;

    // Refresh: one family rotated again and again (read, conditional write, sign).
    let mut tokens = sessions.start(&user).await?;
    let started = Instant::now();
    for _ in 0..refreshes {
        tokens = sessions.refresh(&tokens.refresh_token).await?;
    }
    report("auth", backend, "refresh_rotation", 1, refreshes, started);

    // Many families rotating at once.
    let mut starts = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        starts.push(sessions.start(&user).await?);
    }
    let per_family = (refreshes / concurrency).max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for start in starts {
        let sessions = sessions.clone();
        tasks.spawn(async move {
            let mut tokens = start;
            for _ in 0..per_family {
                tokens = sessions.refresh(&tokens.refresh_token).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    report("auth", backend, "refresh_rotation", concurrency, per_family * concurrency, started);

    // Access-token verification as every authenticated request does it: the ES256
    // signature, the claims, and the denylist read.
    let checks = refreshes * 5;
    let verifier = platform.token_verifier(SessionPolicy::default());
    let started = Instant::now();
    for _ in 0..checks {
        verifier.authenticate(&tokens.access_token).await?;
    }
    report("auth", backend, "access_token_verification", 1, checks, started);
    Ok(())
}
