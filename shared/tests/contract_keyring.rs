//! The `Keyring` contract, run against the local key file and KMS; token signing keys on
//! top of each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use shared::adapters::clock::{ManualClock, UlidIds};
use shared::adapters::embedded::EmbeddedStore;
use shared::app::signing_keys::{PublicKeys, TokenKeys};
use shared::ports::envelope::{EncryptionContext, Sealing};
use shared::ports::keyring::KeyringError;
use shared::ports::{Clock, Keyring, Store};

struct Fixture {
    keyring: Arc<dyn Keyring>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    /// Holds the key file's folder for the test's life.
    _dir: Option<tempfile::TempDir>,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::KmsKeyring;
    use shared::adapters::embedded::LocalKeyring;

    fn store(clock: &Arc<ManualClock>) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::temporary(clock.clone()).unwrap())
    }

    pub async fn embedded() -> Fixture {
        let clock = support::clock();
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open(&dir.path().join("keyring.json")).unwrap();
        Fixture { keyring: Arc::new(keyring), store: store(&clock), clock, _dir: Some(dir) }
    }

    pub async fn aws() -> Fixture {
        let clock = support::clock();
        let client = aws_sdk_kms::Client::new(&support::aws_config().await);
        let key = client.create_key().description("contract test").send().await.expect("create a key in the emulator");
        let key_id = key.key_metadata().map(|m| m.key_id().to_owned()).unwrap();
        Fixture { keyring: Arc::new(KmsKeyring::new(client, key_id)), store: store(&clock), clock, _dir: None }
    }
}

contract!(
    encrypt_then_decrypt_returns_the_plaintext,
    decrypt_with_another_context_fails,
    tampered_ciphertext_fails,
    rotation_keeps_old_ciphertexts_readable,
    rewrap_keeps_the_data_key_under_its_context_only,
    token_keys_sign_verifiably_and_survive_a_restart,
    token_key_rotation_publishes_old_keys_for_the_overlap_only,
);

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const NRIC: &[u8] = b"S1234567D";

async fn encrypt_then_decrypt_returns_the_plaintext(f: Fixture) {
    let ctx = context(&[("purpose", "myinfo"), ("user", "u1")]);
    let sealed = f.keyring.encrypt(NRIC, &ctx).await.unwrap();
    assert!(!sealed.ciphertext.windows(NRIC.len()).any(|w| w == NRIC), "ciphertext contains the plaintext");
    // Envelopes are stored as JSON.
    let stored = serde_json::to_string(&sealed).unwrap();
    let back = serde_json::from_str(&stored).unwrap();
    assert_eq!(f.keyring.decrypt(&back, &ctx).await.unwrap(), NRIC);
    // A fresh data key each time.
    let again = f.keyring.encrypt(NRIC, &ctx).await.unwrap();
    assert_ne!(again.wrapped_key, sealed.wrapped_key);
}

async fn decrypt_with_another_context_fails(f: Fixture) {
    let sealed = f.keyring.encrypt(NRIC, &context(&[("user", "u1")])).await.unwrap();
    for wrong in [context(&[("user", "u2")]), context(&[]), context(&[("user", "u1"), ("extra", "x")])] {
        let err = f.keyring.decrypt(&sealed, &wrong).await.unwrap_err();
        assert!(matches!(err, KeyringError::Decrypt), "{err:?}");
    }
}

async fn tampered_ciphertext_fails(f: Fixture) {
    let ctx = context(&[("user", "u1")]);
    let mut sealed = f.keyring.encrypt(NRIC, &ctx).await.unwrap();
    sealed.ciphertext[0] ^= 1;
    assert!(matches!(f.keyring.decrypt(&sealed, &ctx).await, Err(KeyringError::Decrypt)));
}

async fn rotation_keeps_old_ciphertexts_readable(f: Fixture) {
    let ctx = context(&[("user", "u1")]);
    let before = f.keyring.encrypt(b"before", &ctx).await.unwrap();
    f.keyring.rotate().await.unwrap();
    let after = f.keyring.encrypt(b"after", &ctx).await.unwrap();
    assert_eq!(f.keyring.decrypt(&before, &ctx).await.unwrap(), b"before");
    assert_eq!(f.keyring.decrypt(&after, &ctx).await.unwrap(), b"after");
}

async fn rewrap_keeps_the_data_key_under_its_context_only(f: Fixture) {
    let ctx = context(&[("purpose", "myinfo-person"), ("subject", "usr_1")]);
    let key = f.keyring.generate_data_key(&ctx).await.unwrap();
    f.keyring.rotate().await.unwrap();
    let (key_id, wrapped) = f.keyring.rewrap(&key.key_id, &key.wrapped, &ctx).await.unwrap();
    assert_ne!(wrapped, key.wrapped, "wrapped anew");
    assert_eq!(f.keyring.unwrap_data_key(&key_id, &wrapped, &ctx).await.unwrap(), key.plaintext);
    // The old wrapped form still opens (KMS keeps every key version).
    assert_eq!(f.keyring.unwrap_data_key(&key.key_id, &key.wrapped, &ctx).await.unwrap(), key.plaintext);
    let other = context(&[("purpose", "myinfo-person"), ("subject", "usr_2")]);
    assert!(matches!(f.keyring.rewrap(&key_id, &wrapped, &other).await, Err(KeyringError::Decrypt)));
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Claims {
    sub: String,
    exp: i64,
}

/// How long the contract's rotations keep a retired key.
const OVERLAP: TimeDelta = TimeDelta::minutes(20);

fn verify(keys: &PublicKeys, now: DateTime<Utc>, token: &str) -> Result<Claims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.ok_or("no kid")?;
    let key = keys.decoding_key(&kid, now, OVERLAP).ok_or("unknown kid")?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|d| d.claims).map_err(|e| e.to_string())
}

async fn token_keys_sign_verifiably_and_survive_a_restart(f: Fixture) {
    let ids = UlidIds::default();
    let keys = TokenKeys::load(f.store.as_ref(), f.keyring.as_ref(), f.clock.as_ref(), &ids).await.unwrap();
    let claims = Claims { sub: "user_1".into(), exp: 4_000_000_000 };
    let token = keys.sign(&claims).unwrap();
    let now = f.clock.now();
    assert_eq!(verify(keys.public(), now, &token).unwrap(), claims);
    // Another process loads the same key from the store.
    let reloaded = TokenKeys::load(f.store.as_ref(), f.keyring.as_ref(), f.clock.as_ref(), &ids).await.unwrap();
    assert_eq!(reloaded.current().kid, keys.current().kid);
    assert_eq!(verify(reloaded.public(), now, &token).unwrap(), claims);
    // A verifier reads the public half from the store alone, without the keyring.
    let public = PublicKeys::load(f.store.as_ref()).await.unwrap();
    assert_eq!(verify(&public, now, &token).unwrap(), claims);
    // A tampered payload does not verify.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert!(verify(&public, now, &parts.join(".")).is_err());
    let jwks = public.jwks(now, OVERLAP);
    assert_eq!(jwks["keys"][0]["kid"], keys.current().kid.as_str());
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    assert!(jwks["keys"][0].get("d").is_none(), "the private key is never published");
}

async fn token_key_rotation_publishes_old_keys_for_the_overlap_only(f: Fixture) {
    let ids = UlidIds::default();
    let overlap = OVERLAP;
    let first = TokenKeys::load(f.store.as_ref(), f.keyring.as_ref(), f.clock.as_ref(), &ids).await.unwrap();
    let old_token = first.sign(&Claims { sub: "u".into(), exp: 4_000_000_000 }).unwrap();
    let second =
        TokenKeys::rotate(f.store.as_ref(), f.keyring.as_ref(), f.clock.as_ref(), &ids, overlap).await.unwrap();
    assert_ne!(second.current().kid, first.current().kid);
    let published = PublicKeys::load(f.store.as_ref()).await.unwrap();
    assert_eq!(published.jwks(f.clock.now(), overlap)["keys"].as_array().unwrap().len(), 2);
    assert!(verify(&published, f.clock.now(), &old_token).is_ok(), "a token signed before rotation still verifies");

    // Past the window, the copy read before stops trusting the retired key on its own.
    f.clock.advance(overlap + TimeDelta::seconds(1));
    assert_eq!(verify(&published, f.clock.now(), &old_token), Err("unknown kid".to_owned()));
    assert_eq!(published.jwks(f.clock.now(), overlap)["keys"].as_array().unwrap().len(), 1);
    let third = TokenKeys::rotate(f.store.as_ref(), f.keyring.as_ref(), f.clock.as_ref(), &ids, overlap).await.unwrap();
    let published = PublicKeys::load(f.store.as_ref()).await.unwrap();
    let kids: Vec<String> = published.jwks(f.clock.now(), overlap)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [third.current().kid.clone(), second.current().kid.clone()]);
    assert_eq!(verify(&published, f.clock.now(), &old_token), Err("unknown kid".to_owned()));
}
