//! Signed callbacks a simulator sends the platform, as its partner would: HMAC over the
//! timestamp and the body ([`crate::domain::webhook`]), in two headers.

use std::sync::{Arc, RwLock};

use crate::domain::webhook;
use crate::ports::Clock;

pub(super) struct Callback {
    secret: Vec<u8>,
    /// (timestamp header, signature header).
    headers: (&'static str, &'static str),
    target: RwLock<Option<String>>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Callback {
    pub(super) fn new(secret: Vec<u8>, headers: (&'static str, &'static str), clock: Arc<dyn Clock>) -> Self {
        Self { secret, headers, target: RwLock::new(None), client: super::http::client(), clock }
    }

    /// Where callbacks go.
    pub(super) fn target(&self, url: String) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// Posts `event` signed; answers the platform's HTTP status (0: not delivered).
    pub(super) async fn post<T: serde::Serialize>(&self, event: &T) -> u16 {
        let Some(url) = self.target.read().unwrap_or_else(|p| p.into_inner()).clone() else { return 0 };
        let body = serde_json::to_vec(event).unwrap_or_default();
        let timestamp = self.clock.now().timestamp();
        self.client
            .post(url)
            .header("content-type", "application/json")
            .header(self.headers.0, timestamp.to_string())
            .header(self.headers.1, webhook::sign(&self.secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }
}
