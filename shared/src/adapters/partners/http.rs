//! HTTP clients to the partners' contracts (`docs/partners/bank.md`, `docs/partners/chain.md`,
//! `docs/partners/custody.md`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::uri::percent_encode;
use crate::ports::bank::{Bank, Payout, PayoutAccepted};
use crate::ports::chain::{Chain, ChainTransfer, Receipt};
use crate::ports::custody::{
    Custody, CustodyBalance, CustodyReceipt, CustodyTransfer, Decision, Distribution, DistributionEntry,
};
use crate::ports::partner::PartnerError;
use crate::ports::partner_keys::PartnerKeys;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A client with TLS from the system's roots and a timeout. TLS is rustls on aws-lc, the
/// one crypto library every function already links (the AWS SDK, the token keys).
pub(super) fn client() -> reqwest::Client {
    // Installing a second time finds the same provider in place: nothing to do.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Requests that carry the partner's key. A 401 or 403 may mean the key was rotated:
/// the secret is read again and, if it changed, the request is sent once more (the
/// partner did nothing with a request it refused to authenticate).
struct Authorized {
    keys: Arc<dyn PartnerKeys>,
    client: reqwest::Client,
}

impl Authorized {
    async fn send<F>(&self, build: F) -> Result<Result<reqwest::Response, reqwest::Error>, PartnerError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let secret = self.keys.get().await?;
        let first = build(&self.client).bearer_auth(&secret.api_key).send().await;
        let refused = first.as_ref().is_ok_and(|r| matches!(r.status().as_u16(), 401 | 403));
        if refused {
            let fresh = self.keys.refresh().await?;
            if fresh.api_key != secret.api_key {
                return Ok(build(&self.client).bearer_auth(&fresh.api_key).send().await);
            }
        }
        Ok(first)
    }
}

/// The request's outcome as the ports see it, classified by [`PartnerError::from_status`].
async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, PartnerError> {
    let response = sent
        .map_err(|e| if e.is_timeout() { PartnerError::Timeout } else { PartnerError::Unavailable(e.to_string()) })?;
    let status = response.status();
    if !status.is_success() {
        let detail = response.text().await.unwrap_or_default();
        let detail = format!("{status}: {}", detail.chars().take(200).collect::<String>());
        return Err(PartnerError::from_status(status.as_u16(), detail));
    }
    response.json().await.map_err(|e| PartnerError::Unavailable(format!("unreadable answer: {e}")))
}

pub struct HttpBank {
    base: String,
    http: Authorized,
}

impl HttpBank {
    /// A client of the partner at `base`, presenting the key `keys` hold.
    pub fn new(base: impl Into<String>, keys: Arc<dyn PartnerKeys>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_owned(), http: Authorized { keys, client: client() } }
    }
}

#[async_trait]
impl Bank for HttpBank {
    async fn instruct_payout(&self, payout: &Payout) -> Result<PayoutAccepted, PartnerError> {
        let sent = self
            .http
            .send(|c| {
                c.post(format!("{}/v1/payouts", self.base)).header("idempotency-key", &payout.reference).json(payout)
            })
            .await?;
        answer(sent).await
    }

    async fn find_payout(&self, reference: &str) -> Result<Option<PayoutAccepted>, PartnerError> {
        let sent = self.http.send(|c| c.get(format!("{}/v1/payouts/{}", self.base, percent_encode(reference)))).await?;
        found(sent).await
    }
}

/// A lookup's answer: `None` on `404`.
async fn found<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Option<T>, PartnerError> {
    if sent.as_ref().is_ok_and(|r| r.status() == reqwest::StatusCode::NOT_FOUND) {
        return Ok(None);
    }
    answer(sent).await.map(Some)
}

pub struct HttpChain {
    base: String,
    http: Authorized,
}

impl HttpChain {
    /// A client of the partner at `base`, presenting the key `keys` hold.
    pub fn new(base: impl Into<String>, keys: Arc<dyn PartnerKeys>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_owned(), http: Authorized { keys, client: client() } }
    }
}

#[derive(Deserialize)]
struct BalanceAnswer {
    /// A signed integer as a string (it can exceed 2^53).
    balance: String,
}

#[derive(Deserialize)]
struct HeightAnswer {
    height: u64,
}

#[async_trait]
impl Chain for HttpChain {
    async fn record(&self, transfer: &ChainTransfer) -> Result<Receipt, PartnerError> {
        let sent = self.http.send(|c| c.post(format!("{}/v1/transfers", self.base)).json(transfer)).await?;
        answer(sent).await
    }

    async fn balance(&self, account: &str, asset: &str, height: Option<u64>) -> Result<i128, PartnerError> {
        let mut query = vec![("asset", asset.to_owned())];
        query.extend(height.map(|h| ("height", h.to_string())));
        let sent = self
            .http
            .send(|c| c.get(format!("{}/v1/accounts/{}/balance", self.base, percent_encode(account))).query(&query))
            .await?;
        let answer: BalanceAnswer = answer(sent).await?;
        answer.balance.parse().map_err(|_| PartnerError::Unavailable("balance is not an integer".into()))
    }

    async fn height(&self) -> Result<u64, PartnerError> {
        let sent = self.http.send(|c| c.get(format!("{}/v1/height", self.base))).await?;
        Ok(answer::<HeightAnswer>(sent).await?.height)
    }

    async fn height_at(&self, at: DateTime<Utc>) -> Result<u64, PartnerError> {
        let sent =
            self.http.send(|c| c.get(format!("{}/v1/height", self.base)).query(&[("at", at.to_rfc3339())])).await?;
        Ok(answer::<HeightAnswer>(sent).await?.height)
    }

    async fn balances(
        &self,
        asset: &str,
        height: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, i128)>, PartnerError> {
        let mut query = vec![("asset", asset.to_owned()), ("height", height.to_string()), ("limit", limit.to_string())];
        query.extend(after.map(|a| ("after", a.to_owned())));
        let sent = self.http.send(|c| c.get(format!("{}/v1/balances", self.base)).query(&query)).await?;
        balance_lines(answer(sent).await?)
    }
}

/// A page of balances from the wire.
fn balance_lines(page: BalancesPage) -> Result<Vec<(String, i128)>, PartnerError> {
    page.items
        .into_iter()
        .map(|line| match line.balance.parse() {
            Ok(balance) => Ok((line.account, balance)),
            Err(_) => Err(PartnerError::Unavailable("balance is not an integer".into())),
        })
        .collect()
}

pub struct HttpCustody {
    base: String,
    http: Authorized,
}

impl HttpCustody {
    /// A client of the Custody at `base`, presenting the key `keys` hold.
    pub fn new(base: impl Into<String>, keys: Arc<dyn PartnerKeys>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_owned(), http: Authorized { keys, client: client() } }
    }

    /// GET `path`: the answer, `None` on 404.
    async fn find<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, PartnerError> {
        found(self.http.send(|c| c.get(format!("{}{path}", self.base))).await?).await
    }
}

#[derive(serde::Serialize, Deserialize)]
pub(super) struct EntriesPage {
    pub entries: Vec<DistributionEntry>,
}

#[derive(serde::Serialize, Deserialize)]
pub(super) struct BalancesPage {
    pub items: Vec<BalanceLine>,
}

/// A balance on the wire: a signed integer as a string (it can exceed 2^53).
#[derive(serde::Serialize, Deserialize)]
pub(super) struct BalanceLine {
    pub account: String,
    pub balance: String,
}

#[async_trait]
impl Custody for HttpCustody {
    async fn transfer(&self, transfer: &CustodyTransfer) -> Result<CustodyReceipt, PartnerError> {
        let sent = self
            .http
            .send(|c| {
                c.post(format!("{}/v1/transfers", self.base))
                    .header("idempotency-key", &transfer.reference)
                    .json(transfer)
            })
            .await?;
        answer(sent).await
    }

    async fn find_transfer(&self, reference: &str) -> Result<Option<CustodyReceipt>, PartnerError> {
        self.find(&format!("/v1/transfers/{}", percent_encode(reference))).await
    }

    async fn put_entries(&self, reference: &str, page: u32, entries: &[DistributionEntry]) -> Result<(), PartnerError> {
        let sent = self
            .http
            .send(|c| {
                c.put(format!("{}/v1/distributions/{}/pages/{page}", self.base, percent_encode(reference)))
                    .json(&EntriesPage { entries: entries.to_vec() })
            })
            .await?;
        answer::<serde_json::Value>(sent).await.map(|_| ())
    }

    async fn submit(&self, distribution: &Distribution) -> Result<Decision, PartnerError> {
        let sent = self
            .http
            .send(|c| {
                c.post(format!("{}/v1/distributions/{}/submit", self.base, percent_encode(&distribution.reference)))
                    .json(distribution)
            })
            .await?;
        answer(sent).await
    }

    async fn decision(&self, reference: &str) -> Result<Option<Decision>, PartnerError> {
        self.find(&format!("/v1/distributions/{}", percent_encode(reference))).await
    }

    async fn balances(
        &self,
        asset: &str,
        as_of: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustodyBalance>, PartnerError> {
        let mut query = vec![("asset", asset.to_owned()), ("as_of", as_of.to_rfc3339()), ("limit", limit.to_string())];
        query.extend(after.map(|a| ("after", a.to_owned())));
        let sent = self.http.send(|c| c.get(format!("{}/v1/balances", self.base)).query(&query)).await?;
        let lines = balance_lines(answer(sent).await?)?;
        Ok(lines.into_iter().map(|(account, balance)| CustodyBalance { account, balance }).collect())
    }
}
