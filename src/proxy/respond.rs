//! Response rewrite on the way back to the client.

use http::header::{self, HeaderValue};
use http::Response;

use super::body::ProxyBody;
use super::headers;
use crate::upstream::UpstreamBody;

/// Hop-by-hop headers out (framing is re-derived by hyper), the upgrade
/// headers back in for a websocket `101`.
pub fn rewrite(resp: Response<UpstreamBody>, websocket_101: bool) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        h.remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(h);
    if websocket_101 {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    Response::from_parts(parts, ProxyBody::Upstream(body))
}
