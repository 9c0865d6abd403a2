//! The HTTP client under every store, with the [`Policy`] applied where a
//! URL check cannot reach: a resolver that refuses host names resolving to
//! local addresses (checked at connect time, so a name cannot change its
//! answer between a check and the connection), and a connector that caps
//! what is read of storage's error answers.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    DnsFuture, DnsResolver, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::policy::{Policy, local_address};

/// Most bytes of an error answer's body kept (for its message).
const MAX_ERROR_BODY: usize = 4096;

/// A connection to a refused address; found again in the error's sources
/// to report it as refused, not as storage down.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {what} ({ip}), which module URLs and endpoints may not reach")]
pub struct RefusedAddress {
    pub host: String,
    pub ip: IpAddr,
    pub what: &'static str,
}

/// Resolves with the system resolver, refusing local addresses.
#[derive(Debug)]
struct PublicOnly;

impl DnsResolver for PublicOnly {
    fn resolve(&self, host: &str) -> DnsFuture {
        let host = host.to_string();
        Box::pin(async move {
            let ips: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect();
            if let Some((ip, what)) = ips.iter().find_map(|ip| Some((*ip, local_address(*ip)?))) {
                return Err(Box::new(RefusedAddress { host, ip, what }) as _);
            }
            Ok(ips)
        })
    }
}

/// Client options for a store fetched under `policy`.
pub fn client_options(policy: &Policy) -> ClientOptions {
    let mut options = ClientOptions::new()
        .with_connect_timeout(policy.timeout)
        .with_read_timeout(policy.timeout)
        .with_timeout_disabled();
    if !policy.allow_local_addresses {
        options = options.with_dns_resolver(Arc::new(PublicOnly));
    }
    options
}

/// Retries of a store fetched under `policy`.
pub fn retry(policy: &Policy) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: policy.retries,
        retry_timeout: policy.timeout * 2,
    }
}

/// reqwest, with error bodies cut at [`MAX_ERROR_BODY`] bytes, or dropped
/// when the policy does not quote them.
#[derive(Debug, Clone, Copy)]
pub struct Connector {
    keep: usize,
}

impl Connector {
    pub fn new(policy: &Policy) -> Self {
        let keep = if policy.quote_error_bodies {
            MAX_ERROR_BODY
        } else {
            0
        };
        Self { keep }
    }
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Capped {
            inner,
            keep: self.keep,
        }))
    }
}

#[derive(Debug)]
struct Capped {
    inner: HttpClient,
    keep: usize,
}

#[async_trait::async_trait]
impl HttpService for Capped {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.inner.execute(req).await?;
        if response.status().is_success() || response.status().is_redirection() {
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let body = HttpResponseBody::new(Truncated {
            inner: body,
            left: self.keep,
        });
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A body that ends after `left` more bytes.
struct Truncated {
    inner: HttpResponseBody,
    left: usize,
}

impl Body for Truncated {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    data.truncate(self.left);
                    self.left -= data.len();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                // Trailers: nothing to keep.
                Err(_) => Poll::Ready(None),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
