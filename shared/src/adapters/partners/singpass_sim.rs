//! A Singpass/Myinfo (FAPI 2.0, Myinfo v5) simulator: the same endpoints as Singpass under
//! `/sim/singpass`, with the same cryptography and the same checks (client assertions,
//! PKCE, DPoP with nonces and token binding, one-use codes), personas that meet each
//! accreditation test and ones that meet none, and faults a test injects through
//! `POST /sim/singpass/faults`.

// Amounts in cents are written dollars_cents (`350_000_00` is S$350,000.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::jose::{self, ContentAlg, DecryptionKey, Jwk, KeyAlg, SigningKey, b64};
use crate::ports::Clock;

/// Where the simulator's routes live on the local runner.
pub const BASE_PATH: &str = "/sim/singpass";
const CODE_LIFE: i64 = 60;
const REQUEST_URI_LIFE: i64 = 60;
const PROOF_WINDOW: i64 = 60;

/// The platform's published keys, as Singpass fetches them from its registered JWKS URL.
#[async_trait]
pub trait ClientKeySource: Send + Sync {
    async fn keys(&self) -> Vec<Jwk>;
}

/// What a test can make the simulator do wrong, once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SingpassFault {
    /// The next code has expired when it is exchanged.
    ExpiredCode,
    /// The next ID token carries another `nonce`.
    WrongNonce,
    /// The next ID token is signed by a key its JWKS does not publish.
    UnknownKid,
    /// The next ID token is signed by another key under the published `kid`.
    ForgedIdToken,
    /// The next ID token expired before it was issued.
    ExpiredIdToken,
    /// The next DPoP proof is refused.
    BadDpop,
    /// The next ID token is encrypted to a key the platform does not have.
    WrongEncryptionKey,
}

/// A person Singpass knows.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Persona {
    pub nric: &'static str,
    pub name: &'static str,
    /// Which accreditation test this persona is made to meet (with its declaration, if
    /// any), or "none".
    pub meets: &'static str,
    /// Assessable income of the latest notice of assessment, cents (none: no notice).
    pub income: Option<u64>,
    /// CPF balances, cents.
    pub cpf: u64,
    pub owns_private_property: bool,
}

/// The personas; tests and the local runner pick one at the authorize step.
pub const PERSONAS: &[Persona] = &[
    Persona {
        nric: "S9812381D",
        name: "TAN AH KOW",
        meets: "income",
        income: Some(350_000_00),
        cpf: 180_000_00,
        owns_private_property: false,
    },
    Persona {
        nric: "S9812382B",
        name: "LIM BEE HOON",
        meets: "net_financial_assets (with declared investments of S$800,000)",
        income: Some(150_000_00),
        cpf: 250_000_00,
        owns_private_property: false,
    },
    Persona {
        nric: "S9812383Z",
        name: "RAJ KUMAR S/O MUTHU",
        meets: "net_personal_assets (with a declared residence and other assets)",
        income: Some(120_000_00),
        cpf: 90_000_00,
        owns_private_property: true,
    },
    Persona {
        nric: "S9812384G",
        name: "SITI BINTE AHMAD",
        meets: "none",
        income: Some(80_000_00),
        cpf: 60_000_00,
        owns_private_property: false,
    },
    Persona {
        nric: "T0112345C",
        name: "CHEN WEI MING",
        meets: "none (no notice of assessment)",
        income: None,
        cpf: 12_000_00,
        owns_private_property: false,
    },
];

fn subject_of(persona: &Persona) -> String {
    // Singpass's `sub` is an opaque id, not the NRIC.
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, persona.nric.as_bytes());
    format!("u={}", &data_encoding::HEXLOWER.encode(hash.as_ref())[..32])
}

/// Myinfo v5 person data for `persona` (amounts as JSON numbers, as Myinfo sends them).
fn person_data(persona: &Persona, now: DateTime<Utc>) -> Value {
    let dollars = |cents: u64| -> Value {
        serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap_or(Value::Null)
    };
    let mut person = json!({
        "sub": subject_of(persona),
        "uinfin": { "value": persona.nric },
        "name": { "value": persona.name },
        "cpfbalances": {
            "oa": { "value": dollars(persona.cpf / 2) },
            "sa": { "value": dollars(persona.cpf / 4) },
            "ma": { "value": dollars(persona.cpf - persona.cpf / 2 - persona.cpf / 4) },
            "ra": { "value": dollars(0) },
        },
        "ownerprivate": { "value": persona.owns_private_property },
        "hdbownership": [],
    });
    if let Some(income) = persona.income {
        person["noa-basic"] = json!({
            "amount": { "value": dollars(income) },
            "yearofassessment": { "value": now.year().to_string() },
        });
    }
    person
}

struct PushedRequest {
    params: HashMap<String, String>,
    expires: i64,
}

struct IssuedCode {
    params: HashMap<String, String>,
    persona: Persona,
    expires: i64,
}

struct IssuedToken {
    jkt: String,
    persona: Persona,
    expires: i64,
}

struct SimState {
    signing: Vec<(String, SigningKey)>,
    pushed: HashMap<String, PushedRequest>,
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, IssuedToken>,
    jtis: HashSet<String>,
    dpop_nonce: String,
    faults: VecDeque<SingpassFault>,
}

/// The simulator. Share it with `Arc`.
pub struct SingpassSimulator {
    issuer: String,
    client_id: String,
    redirect_uri: String,
    client_keys: Arc<dyn ClientKeySource>,
    clock: Arc<dyn Clock>,
    state: Mutex<SimState>,
}

fn token() -> String {
    b64(crate::ports::envelope::random_bytes::<24>().unwrap_or_default())
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// A refusal carrying a fresh nonce: the client retries with it.
fn use_nonce(status: StatusCode, nonce: &str) -> Response {
    let mut answer = oauth_error(status, "use_dpop_nonce");
    if let Ok(value) = nonce.parse() {
        answer.headers_mut().insert("dpop-nonce", value);
    }
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = "DPoP error=\"use_dpop_nonce\"".parse()
    {
        answer.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    answer
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), crate::domain::uri::percent_decode(&v.replace('+', " "))?)))
        .collect()
}

impl SingpassSimulator {
    /// A simulator whose issuer is `issuer` (ending in [`BASE_PATH`]), with one registered
    /// client.
    pub fn new(
        issuer: String,
        client_id: String,
        redirect_uri: String,
        client_keys: Arc<dyn ClientKeySource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, jose::JoseError> {
        let state = SimState {
            signing: vec![("sim-sig-1".to_owned(), SigningKey::generate()?)],
            pushed: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            jtis: HashSet::new(),
            dpop_nonce: token(),
            faults: VecDeque::new(),
        };
        Ok(Self { issuer, client_id, redirect_uri, client_keys, clock, state: Mutex::new(state) })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inject(&self, fault: SingpassFault) {
        self.lock().faults.push_back(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    fn take_fault(&self, wanted: &[SingpassFault]) -> Option<SingpassFault> {
        let mut state = self.lock();
        let at = state.faults.iter().position(|f| wanted.contains(f))?;
        state.faults.remove(at)
    }

    /// Starts signing with a new key; the old one stays published.
    pub fn rotate_signing_key(&self) -> Result<String, jose::JoseError> {
        let mut state = self.lock();
        let kid = format!("sim-sig-{}", state.signing.len() + 1);
        state.signing.insert(0, (kid.clone(), SigningKey::generate()?));
        Ok(kid)
    }

    /// Issues a new DPoP nonce (proofs with the old one are refused).
    pub fn rotate_dpop_nonce(&self) {
        self.lock().dpop_nonce = token();
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("/authorize"),
            "pushed_authorization_request_endpoint": self.endpoint("/par"),
            "token_endpoint": self.endpoint("/token"),
            "userinfo_endpoint": self.endpoint("/userinfo"),
            "jwks_uri": self.endpoint("/jwks"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "require_pushed_authorization_requests": true,
            "id_token_encryption_alg_values_supported": ["ECDH-ES+A256KW"],
            "id_token_encryption_enc_values_supported": ["A256GCM", "A256CBC-HS512"],
        })
    }

    fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .lock()
            .signing
            .iter()
            .filter_map(|(kid, key)| key.public_jwk().ok().map(|jwk| jwk.with(kid, "sig", "ES256")))
            .filter_map(|jwk| serde_json::to_value(jwk).ok())
            .collect();
        json!({ "keys": keys })
    }

    /// Checks a `private_key_jwt` client assertion against the client's published keys.
    async fn client_authenticated(&self, params: &HashMap<String, String>) -> Result<(), Box<Response>> {
        let refuse = || Box::new(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"));
        if params.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(refuse());
        }
        let assertion = params.get("client_assertion").ok_or_else(refuse)?;
        let kid =
            jose::peek_header(assertion).ok().and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_owned));
        let keys = self.client_keys.keys().await;
        let key = keys.iter().find(|k| k.kid == kid && k.use_.as_deref() == Some("sig")).ok_or_else(refuse)?;
        let claims: Value = jose::verify(assertion, key).and_then(|v| v.claims()).map_err(|_| refuse())?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (exp, iat) = (claims["exp"].as_i64().unwrap_or(0), claims["iat"].as_i64().unwrap_or(0));
        let now = self.now();
        let fresh = exp > now && exp - iat <= 120 && iat <= now + PROOF_WINDOW;
        if text("iss") != self.client_id || text("sub") != self.client_id || text("aud") != self.issuer || !fresh {
            return Err(refuse());
        }
        if !self.lock().jtis.insert(format!("assertion:{}", text("jti"))) {
            return Err(refuse());
        }
        Ok(())
    }

    /// Checks a DPoP proof for `htm` `htu`; answers the proof key's thumbprint.
    fn dpop_checked(
        &self,
        headers: &HeaderMap,
        htm: &str,
        htu: &str,
        ath: Option<&str>,
    ) -> Result<String, Box<Response>> {
        let status = if ath.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
        let refuse = || Box::new(oauth_error(status, "invalid_dpop_proof"));
        if self.take_fault(&[SingpassFault::BadDpop]).is_some() {
            return Err(refuse());
        }
        let proof = headers.get("dpop").and_then(|v| v.to_str().ok()).ok_or_else(refuse)?;
        let header = jose::peek_header(proof).map_err(|_| refuse())?;
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(refuse());
        }
        let jwk: Jwk = serde_json::from_value(header.get("jwk").cloned().unwrap_or_default()).map_err(|_| refuse())?;
        let claims: Value = jose::verify(proof, &jwk).and_then(|v| v.claims()).map_err(|_| refuse())?;
        let now = self.now();
        let iat = claims["iat"].as_i64().unwrap_or(0);
        if claims["htm"].as_str() != Some(htm)
            || claims["htu"].as_str() != Some(htu)
            || (iat - now).abs() > PROOF_WINDOW
        {
            return Err(refuse());
        }
        if ath.is_some() && claims["ath"].as_str() != ath {
            return Err(refuse());
        }
        let nonce = self.lock().dpop_nonce.clone();
        if claims["nonce"].as_str() != Some(nonce.as_str()) {
            return Err(Box::new(use_nonce(status, &nonce)));
        }
        let jti = claims["jti"].as_str().unwrap_or_default();
        if jti.is_empty() || !self.lock().jtis.insert(format!("dpop:{jti}")) {
            return Err(refuse());
        }
        Ok(jwk.thumbprint())
    }

    /// Signs `claims` and encrypts them to the client's newest encryption key, as the
    /// faults say.
    async fn sealed_for_client(&self, claims: &Value) -> Result<String, Box<Response>> {
        let failed = || Box::new(oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
        let kid = self.lock().signing.first().map(|(kid, _)| kid.clone()).ok_or_else(failed)?;
        let fault = self.take_fault(&[SingpassFault::UnknownKid, SingpassFault::ForgedIdToken]);
        let header = jose::header(&[
            ("typ", "JWT".into()),
            ("kid", if fault == Some(SingpassFault::UnknownKid) { "sim-unknown".into() } else { kid.clone().into() }),
        ]);
        let payload = serde_json::to_vec(claims).map_err(|_| failed())?;
        let jws = if fault.is_some() {
            SigningKey::generate().and_then(|k| k.sign(header, &payload))
        } else {
            let state = self.lock();
            state.signing.first().ok_or(jose::JoseError::Crypto).and_then(|(_, k)| k.sign(header, &payload))
        }
        .map_err(|_| failed())?;
        let keys = self.client_keys.keys().await;
        let recipient = keys.iter().find(|k| k.use_.as_deref() == Some("enc")).cloned().ok_or_else(failed)?;
        let recipient = if self.take_fault(&[SingpassFault::WrongEncryptionKey]).is_some() {
            let stranger = DecryptionKey::generate().and_then(|k| k.public_jwk()).map_err(|_| failed())?;
            Jwk { kid: recipient.kid.clone(), ..stranger }
        } else {
            recipient
        };
        let extra: Map<String, Value> =
            jose::header(&[("kid", recipient.kid.clone().unwrap_or_default().into()), ("cty", "JWT".into())]);
        jose::encrypt(jws.as_bytes(), &recipient, KeyAlg::EcdhEsA256Kw, ContentAlg::A256Gcm, extra)
            .map_err(|_| failed())
    }

    async fn par(&self, body: &[u8]) -> Response {
        let params = parse_form(body);
        if let Err(refused) = self.client_authenticated(&params).await {
            return *refused;
        }
        let required = ["response_type", "redirect_uri", "scope", "state", "nonce", "code_challenge"];
        if required.iter().any(|name| params.get(*name).is_none_or(String::is_empty))
            || params.get("code_challenge_method").map(String::as_str) != Some("S256")
            || params.get("response_type").map(String::as_str) != Some("code")
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        if params.get("redirect_uri") != Some(&self.redirect_uri) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri");
        }
        let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", token());
        let expires = self.now() + REQUEST_URI_LIFE;
        self.lock().pushed.insert(request_uri.clone(), PushedRequest { params, expires });
        (StatusCode::CREATED, axum::Json(json!({ "request_uri": request_uri, "expires_in": REQUEST_URI_LIFE })))
            .into_response()
    }

    fn authorize(&self, query: &HashMap<String, String>) -> Response {
        let Some(request_uri) = query.get("request_uri") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let Some(nric) = query.get("persona") else {
            let links: String = PERSONAS
                .iter()
                .map(|p| {
                    format!(
                        "<li><a href=\"{}/authorize?client_id={}&request_uri={}&persona={}\">{} ({})</a></li>",
                        self.issuer,
                        crate::domain::uri::percent_encode(&self.client_id),
                        crate::domain::uri::percent_encode(request_uri),
                        p.nric,
                        p.name,
                        p.meets
                    )
                })
                .collect();
            return Html(format!("<h1>Singpass simulator</h1><p>Log in as:</p><ul>{links}</ul>")).into_response();
        };
        let Some(persona) = PERSONAS.iter().find(|p| p.nric == nric) else {
            return oauth_error(StatusCode::BAD_REQUEST, "unknown_persona");
        };
        let now = self.now();
        let mut state = self.lock();
        let Some(pushed) = state.pushed.remove(request_uri).filter(|p| p.expires > now) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request_uri");
        };
        if query.get("client_id") != Some(&self.client_id) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
        }
        let code = token();
        let location = format!(
            "{}?code={}&state={}",
            pushed.params["redirect_uri"],
            crate::domain::uri::percent_encode(&code),
            crate::domain::uri::percent_encode(&pushed.params["state"])
        );
        state.codes.insert(code, IssuedCode { params: pushed.params, persona: *persona, expires: now + CODE_LIFE });
        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
    }

    async fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let params = parse_form(body);
        let jkt = match self.dpop_checked(headers, "POST", &self.endpoint("/token"), None) {
            Ok(jkt) => jkt,
            Err(refused) => return *refused,
        };
        if let Err(refused) = self.client_authenticated(&params).await {
            return *refused;
        }
        if params.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        let now = self.now();
        let expired = self.take_fault(&[SingpassFault::ExpiredCode]).is_some();
        let code = params.get("code").cloned().unwrap_or_default();
        let Some(issued) = self.lock().codes.remove(&code).filter(|c| c.expires > now && !expired) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let verifier = params.get("code_verifier").cloned().unwrap_or_default();
        let challenge = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
        if issued.params.get("code_challenge") != Some(&challenge)
            || params.get("redirect_uri") != issued.params.get("redirect_uri")
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        let nonce = if self.take_fault(&[SingpassFault::WrongNonce]).is_some() {
            token()
        } else {
            issued.params.get("nonce").cloned().unwrap_or_default()
        };
        let exp = if self.take_fault(&[SingpassFault::ExpiredIdToken]).is_some() { now - 600 } else { now + 600 };
        let claims = json!({
            "iss": self.issuer, "aud": self.client_id, "sub": subject_of(&issued.persona),
            "nonce": nonce, "iat": now, "exp": exp, "amr": ["pwd", "swk"],
        });
        let id_token = match self.sealed_for_client(&claims).await {
            Ok(jwe) => jwe,
            Err(refused) => return *refused,
        };
        let access_token = token();
        self.lock()
            .tokens
            .insert(access_token.clone(), IssuedToken { jkt, persona: issued.persona, expires: now + 1800 });
        axum::Json(json!({
            "access_token": access_token, "token_type": "DPoP", "expires_in": 1800, "id_token": id_token,
            "scope": issued.params.get("scope"),
        }))
        .into_response()
    }

    async fn userinfo(&self, headers: &HeaderMap) -> Response {
        let access_token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
            .unwrap_or_default()
            .to_owned();
        let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes()));
        let jkt = match self.dpop_checked(headers, "GET", &self.endpoint("/userinfo"), Some(&ath)) {
            Ok(jkt) => jkt,
            Err(refused) => return *refused,
        };
        let now = self.now();
        let persona = {
            let state = self.lock();
            match state.tokens.get(&access_token) {
                Some(t) if t.expires > now && t.jkt == jkt => t.persona,
                Some(t) if t.expires > now => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_dpop_proof"),
                _ => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
            }
        };
        let mut person = person_data(&persona, self.clock.now());
        person["iss"] = self.issuer.clone().into();
        person["aud"] = self.client_id.clone().into();
        person["iat"] = now.into();
        person["exp"] = (now + 600).into();
        match self.sealed_for_client(&person).await {
            Ok(jwe) => ([(header::CONTENT_TYPE, "application/jwt")], jwe).into_response(),
            Err(refused) => *refused,
        }
    }

    /// The simulator's routes, at their absolute paths under [`BASE_PATH`].
    pub fn router(self: &Arc<Self>) -> Router {
        type Sim = State<Arc<SingpassSimulator>>;
        async fn discovery(State(s): Sim) -> Response {
            axum::Json(s.discovery()).into_response()
        }
        async fn jwks(State(s): Sim) -> Response {
            axum::Json(s.jwks()).into_response()
        }
        async fn par(State(s): Sim, body: axum::body::Bytes) -> Response {
            s.par(&body).await
        }
        async fn authorize(State(s): Sim, Query(q): Query<HashMap<String, String>>) -> Response {
            s.authorize(&q)
        }
        async fn token(State(s): Sim, headers: HeaderMap, body: axum::body::Bytes) -> Response {
            s.token(&headers, &body).await
        }
        async fn userinfo(State(s): Sim, headers: HeaderMap) -> Response {
            s.userinfo(&headers).await
        }
        #[derive(Deserialize)]
        struct Injected {
            kind: SingpassFault,
        }
        async fn inject(State(s): Sim, body: axum::Json<Injected>) -> Response {
            s.inject(body.kind);
            StatusCode::NO_CONTENT.into_response()
        }
        async fn clear(State(s): Sim) -> Response {
            s.clear_faults();
            StatusCode::NO_CONTENT.into_response()
        }
        async fn personas() -> Response {
            axum::Json(PERSONAS).into_response()
        }
        let at = |path: &str| format!("{BASE_PATH}{path}");
        Router::new()
            .route(&at("/.well-known/openid-configuration"), get(discovery))
            .route(&at("/jwks"), get(jwks))
            .route(&at("/par"), post(par))
            .route(&at("/authorize"), get(authorize))
            .route(&at("/token"), post(token))
            .route(&at("/userinfo"), get(userinfo))
            .route(&at("/faults"), post(inject).delete(clear))
            .route(&at("/personas"), get(personas))
            .with_state(self.clone())
    }
}
