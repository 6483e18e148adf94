//! Upgrades (SPEC §9.3): HTTP/1.1 websocket is tunnelled; `CONNECT` and any
//! other `Upgrade` (h2c among them) are refused.

use http::{header, Method, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use std::sync::Arc;
use std::time::Duration;

use crate::session::SessionKey;
use crate::state::Shared;

use super::ProxyError;
use crate::wire::headers::has_token;

/// Whether a request asks for a websocket tunnel; errors for refused kinds.
pub fn classify<B>(req: &Request<B>) -> Result<bool, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let Some(up) = req.headers().get(header::UPGRADE) else {
        return Ok(false);
    };
    let websocket = up.as_bytes().eq_ignore_ascii_case(b"websocket")
        && req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(req.headers(), &header::CONNECTION, "upgrade");
    if websocket {
        Ok(true)
    } else {
        Err(ProxyError::UpgradeRefused)
    }
}

/// How often an open tunnel checks that its session is still live: a
/// tunnel closes within this long after its session ends (SPEC §9.3).
const SESSION_POLL: Duration = Duration::from_millis(250);

/// The session a tunnel belongs to; the tunnel dies with it.
pub struct SessionWatch {
    pub shared: Arc<Shared>,
    pub key: SessionKey,
}

impl SessionWatch {
    /// Resolves once the session is no longer live. Traffic in the tunnel
    /// is not activity, so this never touches the session. A store error
    /// is not an ended session: the tunnel stays open through an outage.
    async fn ended(&self) {
        let mut tick = tokio::time::interval(SESSION_POLL);
        loop {
            tick.tick().await;
            let cfg = &self.shared.state().config.session;
            if let Ok(false) = self.shared.sessions.is_live(&self.key, cfg).await {
                return;
            }
        }
    }
}

/// Joins the client and upstream sides of an upgraded connection until
/// either side closes, `stop` turns true, or the session ends.
pub fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    mut stop: watch::Receiver<bool>,
    session: Option<SessionWatch>,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "websocket tunnel ended with an error");
                }
            }
            _ = stop.wait_for(|s| *s) => tracing::debug!("websocket tunnel closed by the proxy"),
            _ = async { match &session { Some(w) => w.ended().await, None => std::future::pending().await } } => {
                tracing::debug!("websocket tunnel closed: its session ended");
            }
        }
    });
}
