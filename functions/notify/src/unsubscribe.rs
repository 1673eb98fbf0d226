//! One-click unsubscribe from offering news (RFC 8058): each news email carries a link
//! whose token is the investor's id and an HMAC-SHA256 of it under a key kept in the table
//! sealed by the data key. A `POST` to the link turns offering news off; nothing else is
//! needed (mail clients send it without the investor signing in), and a token names no
//! one but its owner.

use std::sync::Arc;

use shared::app::accounts::{AccountError, sealed_secret};
use shared::ports::envelope::EncryptionContext;
use shared::ports::store::Key;
use shared::ports::{Keyring, Store};
use tokio::sync::OnceCell;

/// Where a news email's one-click unsubscribe posts.
pub const PATH: &str = "/v1/notices/unsubscribe";

fn key_item() -> Key {
    Key::new("UNSUBSCRIBE", "KEY")
}

fn context() -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "unsubscribe-key".to_owned())])
}

pub struct Unsubscribe {
    store: Arc<dyn Store>,
    keyring: Arc<dyn Keyring>,
    public_url: String,
    key: OnceCell<aws_lc_rs::hmac::Key>,
}

impl Unsubscribe {
    pub fn new(store: Arc<dyn Store>, keyring: Arc<dyn Keyring>, public_url: String) -> Self {
        Self { store, keyring, public_url, key: OnceCell::new() }
    }

    async fn key(&self) -> Result<&aws_lc_rs::hmac::Key, AccountError> {
        self.key
            .get_or_try_init(|| async {
                let secret = sealed_secret(self.store.as_ref(), self.keyring.as_ref(), key_item(), &context()).await?;
                Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret))
            })
            .await
    }

    fn mac(key: &aws_lc_rs::hmac::Key, user_id: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(key, format!("offering-news:{user_id}").as_bytes());
        data_encoding::BASE64URL_NOPAD.encode(tag.as_ref())
    }

    /// The investor's one-click link.
    pub async fn link(&self, user_id: &str) -> Result<String, AccountError> {
        let mac = Self::mac(self.key().await?, user_id);
        Ok(format!("{}{PATH}?token={user_id}.{mac}", self.public_url.trim_end_matches('/')))
    }

    /// The investor a token names; `None` for a token this platform did not make.
    pub async fn verify(&self, token: &str) -> Result<Option<String>, AccountError> {
        let Some((user_id, mac)) = token.rsplit_once('.') else { return Ok(None) };
        let Ok(tag) = data_encoding::BASE64URL_NOPAD.decode(mac.as_bytes()) else { return Ok(None) };
        let message = format!("offering-news:{user_id}");
        Ok(aws_lc_rs::hmac::verify(self.key().await?, message.as_bytes(), &tag).is_ok().then(|| user_id.to_owned()))
    }
}
