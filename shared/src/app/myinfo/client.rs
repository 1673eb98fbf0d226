//! The Singpass FAPI 2.0 client (Myinfo v5): discovery, Singpass's JWKS cached by `kid`,
//! pushed authorization requests (RFC 9126) with PKCE S256, `private_key_jwt` client
//! authentication, DPoP (RFC 9449) with the server's nonce, the ID token and `/userinfo`
//! answers as JWS nested in JWE. Each HTTP exchange is recorded as an [`Exchange`] for the
//! transaction log; the client itself keeps nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::domain::uri::percent_encode;
use crate::jose::{self, DecryptionKey, JoseError, Jwk, SigningKey, b64};

/// A client assertion lives this long (Singpass accepts at most two minutes).
const ASSERTION_LIFE: i64 = 60;
/// The ID token's clock skew allowance.
const SKEW: i64 = 60;
/// Singpass's key set is fetched again for an unknown `kid` at most this often.
pub const JWKS_RELOAD_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Where Singpass is and who the platform is to it.
#[derive(Debug, Clone, Default)]
pub struct SingpassConfig {
    /// The issuer; its discovery document is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The platform's callback, as registered with Singpass.
    pub redirect_uri: String,
    /// The Myinfo scopes asked for.
    pub scope: String,
}

/// Why an exchange with Singpass failed. `code()` is what the log and the caller see: it
/// names the check, never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FapiError {
    #[error("Singpass could not be reached: {0}")]
    Transport(String),
    #[error("Singpass refused the request ({status}): {error}")]
    Refused { status: u16, error: String },
    #[error("the answer failed the {0} check")]
    Check(&'static str),
    #[error("no Singpass key has the id the answer names")]
    UnknownKid,
    #[error(transparent)]
    Jose(#[from] JoseError),
}

impl FapiError {
    pub fn code(&self) -> String {
        match self {
            Self::Transport(_) => "unreachable".into(),
            Self::Refused { error, .. } => error.clone(),
            Self::Check(check) => format!("{check}_check_failed"),
            Self::UnknownKid => "unknown_kid".into(),
            Self::Jose(JoseError::BadSignature) => "bad_signature".into(),
            Self::Jose(JoseError::Decrypt) => "cannot_decrypt".into(),
            Self::Jose(_) => "malformed".into(),
        }
    }
}

/// How requests reach Singpass: HTTPS in AWS; in process to the simulator locally.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FapiError>;
}

/// HTTPS with rustls on aws-lc.
pub struct HttpsTransport(reqwest::Client);

impl Default for HttpsTransport {
    fn default() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self(client)
    }
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FapiError> {
        let (parts, body) = request.into_parts();
        let sent = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| FapiError::Transport(e.without_url().to_string()))?;
        let mut answer = http::Response::builder().status(sent.status());
        for (name, value) in sent.headers() {
            answer = answer.header(name, value);
        }
        let body = sent.bytes().await.map_err(|e| FapiError::Transport(e.without_url().to_string()))?;
        answer.body(body.to_vec()).map_err(|e| FapiError::Transport(e.to_string()))
    }
}

/// In process, to an axum router (the simulator of an embedded platform).
pub struct RouterTransport(pub axum::Router);

#[async_trait]
impl Transport for RouterTransport {
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FapiError> {
        use tower::ServiceExt as _;
        // The router sees the path and query, as a server behind the issuer's URL would.
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        parts.uri = path.parse().map_err(|_| FapiError::Transport("bad request URI".into()))?;
        let request = http::Request::from_parts(parts, axum::body::Body::from(body));
        let answer = self.0.clone().oneshot(request).await.map_err(|e| FapiError::Transport(e.to_string()))?;
        let (parts, body) = answer.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| FapiError::Transport(e.to_string()))?;
        Ok(http::Response::from_parts(parts, bytes.to_vec()))
    }
}

/// The parts of Singpass's discovery document the client uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub pushed_authorization_request_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
}

/// One HTTP exchange with Singpass, for the transaction log. `personal` holds what in it
/// is personal data (decrypted claims and person data); the log seals it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub step: &'static str,
    pub method: &'static str,
    pub url: String,
    pub status: u16,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub personal: Option<Value>,
}

/// The platform's keys as the client uses them.
pub struct ClientKeys {
    pub signing_kid: String,
    pub signing: SigningKey,
    /// Every decryption key still published (the newest first), by `kid`.
    pub decryption: Vec<(String, DecryptionKey)>,
}

/// What the authorization needs kept until the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pushed {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// The verified ID token's claims the platform uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub iat: i64,
    pub exp: i64,
}

/// What the callback obtained: the verified ID token claims and the person data.
#[derive(Debug, Clone)]
pub struct Obtained {
    pub id: IdClaims,
    pub person: Value,
}

#[derive(Default)]
struct JwksCache {
    keys: Vec<Jwk>,
    fetched: Option<DateTime<Utc>>,
}

/// The FAPI 2.0 client. Cheap to share; it caches the discovery document and Singpass's
/// signing keys.
pub struct FapiClient {
    config: SingpassConfig,
    transport: Arc<dyn Transport>,
    discovery: RwLock<Option<Discovery>>,
    jwks: RwLock<JwksCache>,
}

fn random_token() -> Result<String, FapiError> {
    Ok(b64(crate::ports::envelope::random_bytes::<32>().map_err(|_| FapiError::Jose(JoseError::Crypto))?))
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect::<Vec<_>>().join("&").into_bytes()
}

/// The OAuth error of an error answer (`error` in JSON, or in `WWW-Authenticate`).
fn oauth_error(answer: &http::Response<Vec<u8>>) -> String {
    let from_body = serde_json::from_slice::<Value>(answer.body())
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
    let from_header = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("error=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .map(str::to_owned);
    from_body.or(from_header).unwrap_or_else(|| format!("http_{}", answer.status().as_u16()))
}

impl FapiClient {
    pub fn new(config: SingpassConfig, transport: Arc<dyn Transport>) -> Self {
        Self { config, transport, discovery: RwLock::new(None), jwks: RwLock::new(JwksCache::default()) }
    }

    pub fn config(&self) -> &SingpassConfig {
        &self.config
    }

    async fn get_json(&self, url: &str) -> Result<Value, FapiError> {
        let request = http::Request::get(url).body(Vec::new()).map_err(|e| FapiError::Transport(e.to_string()))?;
        let answer = self.transport.send(request).await?;
        if !answer.status().is_success() {
            return Err(FapiError::Refused { status: answer.status().as_u16(), error: oauth_error(&answer) });
        }
        serde_json::from_slice(answer.body()).map_err(|_| FapiError::Check("json"))
    }

    /// The discovery document, fetched once.
    pub async fn discovery(&self) -> Result<Discovery, FapiError> {
        if let Some(found) = self.discovery.read().await.clone() {
            return Ok(found);
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let document: Discovery =
            serde_json::from_value(self.get_json(&url).await?).map_err(|_| FapiError::Check("discovery"))?;
        if document.issuer != self.config.issuer {
            return Err(FapiError::Check("issuer"));
        }
        *self.discovery.write().await = Some(document.clone());
        Ok(document)
    }

    /// Singpass's signing key `kid`: from the cache, or from a fresh copy of the key set if
    /// the cache does not have it and was not fetched within [`JWKS_RELOAD_EVERY`].
    async fn singpass_key(&self, kid: &str, now: DateTime<Utc>) -> Result<Jwk, FapiError> {
        if let Some(key) = self.jwks.read().await.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            return Ok(key.clone());
        }
        let mut cache = self.jwks.write().await;
        if let Some(key) = cache.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            return Ok(key.clone());
        }
        if cache.fetched.is_some_and(|at| now - at < JWKS_RELOAD_EVERY) {
            return Err(FapiError::UnknownKid);
        }
        let url = self.discovery().await?.jwks_uri;
        let set = self.get_json(&url).await?;
        let keys: Vec<Jwk> = serde_json::from_value(set.get("keys").cloned().unwrap_or_default())
            .map_err(|_| FapiError::Check("jwks"))?;
        *cache = JwksCache { keys, fetched: Some(now) };
        cache.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned().ok_or(FapiError::UnknownKid)
    }

    /// A `private_key_jwt` client assertion for Singpass (`aud` is the issuer).
    fn client_assertion(&self, keys: &ClientKeys, now: DateTime<Utc>) -> Result<String, FapiError> {
        let claims = json!({
            "iss": self.config.client_id, "sub": self.config.client_id, "aud": self.config.issuer,
            "iat": now.timestamp(), "exp": now.timestamp() + ASSERTION_LIFE, "jti": random_token()?,
        });
        let header = jose::header(&[("typ", "JWT".into()), ("kid", keys.signing_kid.clone().into())]);
        Ok(keys.signing.sign_json(header, &claims)?)
    }

    /// Pushes the authorization request; answers the URL to send the investor to and what
    /// the callback must check.
    pub async fn push(
        &self,
        keys: &ClientKeys,
        now: DateTime<Utc>,
        log: &mut Vec<Exchange>,
    ) -> Result<Pushed, FapiError> {
        let discovery = self.discovery().await?;
        let (state, nonce, code_verifier) = (random_token()?, random_token()?, random_token()?);
        let challenge = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code_verifier.as_bytes()));
        let assertion = self.client_assertion(keys, now)?;
        let body = form(&[
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", &self.config.redirect_uri),
            ("scope", &self.config.scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ]);
        let url = discovery.pushed_authorization_request_endpoint.clone();
        let answer = self.transport.send(form_request(&url, body, None)?).await;
        let answer = record(log, "par", "POST", &url, now, answer)?;
        let request_uri = serde_json::from_slice::<Value>(answer.body())
            .ok()
            .and_then(|v| v.get("request_uri").and_then(Value::as_str).map(str::to_owned))
            .ok_or(FapiError::Check("request_uri"))?;
        let authorize_url = format!(
            "{}?client_id={}&request_uri={}",
            discovery.authorization_endpoint,
            percent_encode(&self.config.client_id),
            percent_encode(&request_uri)
        );
        Ok(Pushed { authorize_url, state, nonce, code_verifier })
    }

    /// Sends what `request` builds with the server's DPoP nonce as known so far. A
    /// `use_dpop_nonce` refusal is logged and the request built and sent once more with the
    /// fresh nonce, which later requests then carry.
    async fn with_dpop_nonce(
        &self,
        (step, method, url): (&'static str, &'static str, &str),
        nonce: &mut Option<String>,
        now: DateTime<Utc>,
        log: &mut Vec<Exchange>,
        request: impl Fn(Option<&str>) -> Result<http::Request<Vec<u8>>, FapiError>,
    ) -> Result<http::Response<Vec<u8>>, FapiError> {
        let answer = self.transport.send(request(nonce.as_deref())?).await;
        let Some(fresh) = wants_nonce(&answer) else { return record(log, step, method, url, now, answer) };
        // Logged; the refusal is the nonce to use, not a failure.
        let _ = record(log, step, method, url, now, answer);
        *nonce = Some(fresh);
        let answer = self.transport.send(request(nonce.as_deref())?).await;
        record(log, step, method, url, now, answer)
    }

    /// Exchanges the code and fetches the person: the token request and `/userinfo`, both
    /// with DPoP proofs from a key made for this exchange alone.
    pub async fn obtain(
        &self,
        keys: &ClientKeys,
        code: &str,
        pushed: &Pushed,
        now: DateTime<Utc>,
        log: &mut Vec<Exchange>,
    ) -> Result<Obtained, FapiError> {
        let discovery = self.discovery().await?;
        let dpop = SigningKey::generate()?;
        let mut nonce: Option<String> = None;
        let url = discovery.token_endpoint.clone();
        let token_request = |nonce: Option<&str>| {
            let assertion = self.client_assertion(keys, now)?;
            let body = form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.config.redirect_uri),
                ("client_id", &self.config.client_id),
                ("code_verifier", &pushed.code_verifier),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &assertion),
            ]);
            form_request(&url, body, Some(dpop_proof(&dpop, "POST", &url, nonce, None, now)?))
        };
        let answer = self.with_dpop_nonce(("token", "POST", &url), &mut nonce, now, log, token_request).await?;
        let tokens: Value = serde_json::from_slice(answer.body()).map_err(|_| FapiError::Check("json"))?;
        let text = |name: &'static str| tokens.get(name).and_then(Value::as_str).ok_or(FapiError::Check(name));
        if !text("token_type")?.eq_ignore_ascii_case("DPoP") {
            return Err(FapiError::Check("token_type"));
        }
        let access_token = text("access_token")?.to_owned();
        let id = self.verified(keys, text("id_token")?, now).await;
        let id: IdClaims = match id {
            Ok(claims) => {
                let nonce_matches = claims.get("nonce").and_then(Value::as_str) == Some(pushed.nonce.as_str());
                let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
                let checked = if !nonce_matches {
                    Err(FapiError::Check("nonce"))
                } else if iat > now.timestamp() + SKEW {
                    Err(FapiError::Check("iat"))
                } else {
                    serde_json::from_value(claims.clone()).map_err(|_| FapiError::Check("sub"))
                };
                if let Some(last) = log.last_mut() {
                    last.personal = Some(claims);
                }
                checked.map_err(|e| annotate(log, e))?
            }
            Err(e) => return Err(annotate(log, e)),
        };
        let url = discovery.userinfo_endpoint.clone();
        let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes()));
        let answer = self
            .with_dpop_nonce(("userinfo", "GET", &url), &mut nonce, now, log, |nonce| {
                http::Request::get(&url)
                    .header("authorization", format!("DPoP {access_token}"))
                    .header("dpop", dpop_proof(&dpop, "GET", &url, nonce, Some(&ath), now)?)
                    .body(Vec::new())
                    .map_err(|e| FapiError::Transport(e.to_string()))
            })
            .await?;
        let jwt = std::str::from_utf8(answer.body()).map_err(|_| FapiError::Check("userinfo"))?.trim().to_owned();
        let person = match self.verified(keys, &jwt, now).await {
            Ok(person) if person.get("sub").and_then(Value::as_str) == Some(id.sub.as_str()) => person,
            Ok(_) => return Err(annotate(log, FapiError::Check("sub"))),
            Err(e) => return Err(annotate(log, e)),
        };
        if let Some(last) = log.last_mut() {
            last.personal = Some(person.clone());
        }
        Ok(Obtained { id, person })
    }

    /// Decrypts a JWE with the platform's key its `kid` names, then verifies the JWS inside
    /// with Singpass's key and checks issuer, audience and expiry.
    async fn verified(&self, keys: &ClientKeys, jwe: &str, now: DateTime<Utc>) -> Result<Value, FapiError> {
        let kid = jose::peek_header(jwe)?.get("kid").and_then(Value::as_str).map(str::to_owned);
        let key = match kid {
            Some(kid) => keys.decryption.iter().find(|(k, _)| *k == kid).map(|(_, key)| key),
            None => keys.decryption.first().map(|(_, key)| key),
        }
        .ok_or(FapiError::Jose(JoseError::Decrypt))?;
        let (_, inner) = key.decrypt(jwe)?;
        let inner = String::from_utf8(inner).map_err(|_| FapiError::Check("jws"))?;
        let kid = jose::peek_header(&inner)?.get("kid").and_then(Value::as_str).map(str::to_owned);
        let signer = self.singpass_key(&kid.ok_or(FapiError::UnknownKid)?, now).await?;
        let claims: Value = jose::verify(&inner, &signer)?.claims()?;
        let discovery = self.discovery().await?;
        if claims.get("iss").and_then(Value::as_str) != Some(discovery.issuer.as_str()) {
            return Err(FapiError::Check("issuer"));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.config.client_id,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(self.config.client_id.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(FapiError::Check("audience"));
        }
        if claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp + SKEW <= now.timestamp()) {
            return Err(FapiError::Check("expiry"));
        }
        Ok(claims)
    }
}

/// A form POST, with a DPoP proof if given.
fn form_request(url: &str, body: Vec<u8>, dpop: Option<String>) -> Result<http::Request<Vec<u8>>, FapiError> {
    let mut request = http::Request::post(url).header("content-type", "application/x-www-form-urlencoded");
    if let Some(proof) = dpop {
        request = request.header("dpop", proof);
    }
    request.body(body).map_err(|e| FapiError::Transport(e.to_string()))
}

/// Marks the last exchange as failed with `error`'s code.
fn annotate(log: &mut [Exchange], error: FapiError) -> FapiError {
    if let Some(last) = log.last_mut() {
        last.outcome = error.code();
    }
    error
}

/// The fresh nonce a `use_dpop_nonce` answer carries.
fn wants_nonce(answer: &Result<http::Response<Vec<u8>>, FapiError>) -> Option<String> {
    let answer = answer.as_ref().ok()?;
    if !matches!(answer.status().as_u16(), 400 | 401) || oauth_error(answer) != "use_dpop_nonce" {
        return None;
    }
    answer.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Adds the exchange to the log and answers the response if it succeeded.
fn record(
    log: &mut Vec<Exchange>,
    step: &'static str,
    method: &'static str,
    url: &str,
    at: DateTime<Utc>,
    answer: Result<http::Response<Vec<u8>>, FapiError>,
) -> Result<http::Response<Vec<u8>>, FapiError> {
    let (status, outcome, result) = match answer {
        Ok(answer) if answer.status().is_success() => (answer.status().as_u16(), "ok".to_owned(), Ok(answer)),
        Ok(answer) => {
            let error = FapiError::Refused { status: answer.status().as_u16(), error: oauth_error(&answer) };
            (answer.status().as_u16(), error.code(), Err(error))
        }
        Err(error) => (0, error.code(), Err(error)),
    };
    log.push(Exchange { step, method, url: url.to_owned(), status, outcome, at, personal: None });
    result
}

/// A DPoP proof (RFC 9449 §4.2) for `htm` `htu`, with the server's nonce and, for a
/// resource request, the access token's hash.
pub fn dpop_proof(
    key: &SigningKey,
    htm: &str,
    htu: &str,
    nonce: Option<&str>,
    ath: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, FapiError> {
    let mut claims = json!({ "jti": random_token()?, "htm": htm, "htu": htu, "iat": now.timestamp() });
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    if let Some(ath) = ath {
        claims["ath"] = ath.into();
    }
    let jwk = serde_json::to_value(key.public_jwk()?).map_err(|_| FapiError::Jose(JoseError::Crypto))?;
    let header = jose::header(&[("typ", "dpop+jwt".into()), ("jwk", jwk)]);
    Ok(key.sign_json(header, &claims)?)
}
