//! The caller's network address: API Gateway's source IP under Lambda, the socket's peer
//! address under the local runner, `unknown` when neither is there (tests in process).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
            parts.extensions.get::<lambda_http::request::RequestContext>()
            && let Some(ip) = &context.http.source_ip
        {
            return Ok(Self(ip.clone()));
        }
        if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            return Ok(Self(peer.ip().to_string()));
        }
        Ok(Self("unknown".to_owned()))
    }
}
