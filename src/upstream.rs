//! The pooled keep-alive HTTP/1.1 client to upstreams, with the connect and
//! response-header timeouts of `[server]`.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Server;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("upstream connect timed out")]
    ConnectTimeout(#[source] hyper_util::client::legacy::Error),
    #[error("no response headers from upstream within {0:?}")]
    ResponseTimeout(Duration),
    #[error("upstream closed or reset the connection")]
    Failed(#[source] hyper_util::client::legacy::Error),
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout(_) | UpstreamError::ResponseTimeout(_)
        )
    }
}

#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(server: &Server) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(server.upstream_connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self {
            client,
            response_timeout: server.upstream_response_timeout,
        }
    }

    /// Sends a request; the timeout covers connecting and the response head.
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::ResponseTimeout(self.response_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() && caused_by_timeout(&e) => {
                Err(UpstreamError::ConnectTimeout(e))
            }
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(e)),
            Ok(Err(e)) => Err(UpstreamError::Failed(e)),
        }
    }
}

fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}
