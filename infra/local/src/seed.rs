//! Demo data for the local runner: on first start, a super-admin, one operator per role
//! and investors at each level, with their credentials written to `<data-dir>/seed.json`.

use std::path::Path;

use serde_json::json;
use shared::Platform;
use shared::domain::access::Role;

/// (email, roles, level, with a second factor)
const PEOPLE: &[(&str, &[Role], u8, bool)] = &[
    ("admin@dabs.local", &[Role::SuperAdmin], 2, true),
    ("co-operator@dabs.local", &[Role::CoOperator], 2, true),
    ("members@dabs.local", &[Role::MemberManagement], 2, true),
    ("deals@dabs.local", &[Role::Deal], 2, true),
    ("finance@dabs.local", &[Role::Finance], 2, true),
    ("issuer@dabs.local", &[Role::Issuer], 2, true),
    ("investor1@dabs.local", &[], 1, false),
    ("investor2@dabs.local", &[], 2, true),
    ("investor3@dabs.local", &[], 3, true),
    ("investor3b@dabs.local", &[], 3, true),
];

/// A password that passes the policy, unguessable, and readable in the seed file.
fn password() -> String {
    let bytes = shared::ports::envelope::random_bytes::<12>().unwrap_or_default();
    format!("demo-{}", data_encoding::HEXLOWER.encode(&bytes))
}

/// Creates the demo people unless `seed.json` exists; returns whether it seeded.
pub async fn seed_once(platform: &Platform, data_dir: &Path) -> anyhow::Result<bool> {
    let file = data_dir.join("seed.json");
    if file.exists() {
        return Ok(false);
    }
    let accounts = platform.accounts();
    let mfa = platform.second_factor();
    let mut users = Vec::new();
    for (email, roles, level, second_factor) in PEOPLE {
        let password = password();
        let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let user = accounts.create_verified(email, &password, &role_names, *level).await?;
        let totp_secret = if *second_factor { Some(mfa.enroll_confirmed(&user.id).await?) } else { None };
        users.push(json!({
            "email": email, "password": password, "roles": role_names, "level": level,
            "totp_secret": totp_secret, "user_id": user.id,
        }));
    }
    let seed = json!({ "users": users });
    write_private(&file, serde_json::to_string_pretty(&seed)?.as_bytes())?;
    Ok(true)
}

/// Creates the first two operators, each with a fresh password and TOTP secret, unless any
/// user exists already: a super-admin and a co-operator, so the co-operator can approve the
/// super-admin's first change requests (granting more roles) without anyone editing the
/// table. Every later operator goes through maker-checker.
pub async fn bootstrap_operators(
    platform: &Platform,
    admin_email: &str,
    co_operator_email: &str,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        admin_email.trim().to_lowercase() != co_operator_email.trim().to_lowercase(),
        "the two operators need two addresses"
    );
    let anyone = platform
        .store
        .query(&shared::ports::store::Query::secondary(shared::app::accounts::USERS_INDEX).limit(1))
        .await?;
    anyhow::ensure!(anyone.items.is_empty(), "users exist already: grant roles through change requests instead");
    let mut operators = serde_json::Map::new();
    for (name, email, role) in
        [("super_admin", admin_email, Role::SuperAdmin), ("co_operator", co_operator_email, Role::CoOperator)]
    {
        let password = password();
        let user = platform.accounts().create_verified(email, &password, &[role.as_str()], 2).await?;
        let totp_secret = platform.second_factor().enroll_confirmed(&user.id).await?;
        let operator = json!({ "user_id": user.id, "email": email, "password": password, "totp_secret": totp_secret });
        operators.insert(name.to_owned(), operator);
    }
    Ok(serde_json::Value::Object(operators))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
