//! Phase 1, inspect: what the request line and head must be before anything
//! else looks at them. `CONNECT` and upgrades other than websocket are
//! refused (SPEC §9.3), a head over `max_request_header_bytes` is 431, a
//! target that is not a clean origin-form path is 400 (§3), and so is a
//! missing or malformed host. The path is normalised here, once.

use http::{Request, Uri};

use super::{upgrade, Ctx, ProxyError};
use crate::wire::{headers, host, path};

pub fn request<'a, B>(ctx: &mut Ctx<'a>, req: &Request<B>, uri: &'a Uri) -> Result<(), ProxyError> {
    ctx.websocket = upgrade::classify(req)?;
    if headers::size(req.headers()) > ctx.state.config.server.max_request_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let (raw_path, query) = path::split_target(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    ctx.path = path::normalise(raw_path).ok_or(ProxyError::BadRequest("invalid request target"))?;
    ctx.query = query;
    ctx.host = host::client_host(uri, req.headers(), &ctx.conn.host)
        .ok_or(ProxyError::BadRequest("missing Host"))?;
    Ok(())
}
