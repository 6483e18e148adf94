//! `provider = "oidc"` (SPEC §8.6): `GET /.cloakroom/login?rd=` starts the
//! authorization code flow with PKCE; `GET /.cloakroom/callback` finishes
//! it. The relying party itself (discovery, code exchange, ID token
//! validation) is [`crate::oidc`].
//!
//! A login is bound to the browser's session: the start makes one when
//! there is none (it has something to store), the callback accepts only
//! the session that started it, takes the pending login once, and on
//! success binds the identity by rotating the session
//! ([`SessionState::login`]), then redirects to the return path.

use http::{header, Response, StatusCode};

use super::local::query_value as query_param;
use super::{return_path, Own};
use crate::oidc::{random_token, OidcError, Pending, RelyingParty};
use crate::reply::{redirect, ProxyBody, ProxyError};
use crate::session::audit::audit;
use crate::session::request::NewSession;
use crate::session::{now_ms, Session, SessionState, SessionStore};

pub(super) async fn start<S: SessionStore + 'static>(
    own: &Own<'_, S>,
    rp: &RelyingParty,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let meta = rp.metadata().await.map_err(unavailable)?;
    let ua = own
        .req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let new = NewSession {
        client: own.client_ip,
        now: now_ms(),
    };
    let session = sess
        .ensure(own.manager, &own.state.config.session, new, ua)
        .await?;
    let (state, nonce, verifier) = (
        random_token().map_err(internal)?,
        random_token().map_err(internal)?,
        random_token().map_err(internal)?,
    );
    let login = Pending::new(
        session,
        nonce,
        verifier,
        format!("https://{}/.cloakroom/callback", own.host),
        return_path(own.query).unwrap_or_else(|| "/".into()),
    );
    let location = rp.authorization_url(&meta, &login, &state);
    rp.pending.insert(&state, login);
    Ok(redirect(StatusCode::FOUND, &location))
}

pub(super) async fn callback<S: SessionStore + 'static>(
    own: &Own<'_, S>,
    rp: &RelyingParty,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Taken first: a state is good for one callback, whatever follows.
    let login = query_param(own.query, "state").and_then(|s| rp.pending.take(&s));
    let Some(login) = login else {
        tracing::warn!("OIDC callback refused: unknown, used or expired state");
        return Err(ProxyError::LoginRefused(
            "unknown, used or expired login state",
        ));
    };
    if sess.key() != Some(&login.session) {
        let handle = sess.handle();
        tracing::warn!(
            session = handle.as_ref().map(|h| h.as_str()),
            "OIDC callback refused: not the session that started the login"
        );
        return Err(ProxyError::LoginRefused("the login was started elsewhere"));
    }
    if let Some(error) = query_param(own.query, "error") {
        // The issuer's own error code (e.g. access_denied), printable only.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        tracing::warn!(error, "OIDC login refused by the issuer");
        return Err(ProxyError::LoginRefused("the issuer refused the login"));
    }
    let Some(code) = query_param(own.query, "code") else {
        return Err(ProxyError::LoginRefused("no authorization code"));
    };
    let identity = rp.finish(&login, &code).await.map_err(|e| {
        tracing::warn!(error = %e, "OIDC login refused");
        match e {
            OidcError::Http { .. } | OidcError::BadDocument { .. } => ProxyError::IssuerUnavailable,
            _ => ProxyError::LoginRefused("the issuer's answer did not verify"),
        }
    })?;
    let cfg = &own.state.config.session;
    // The callback took the pending login of this very session; should it
    // have ended since, nothing is bound and no session is made.
    if sess.live.is_none() {
        return Err(ProxyError::LoginRefused(
            "the session ended during the login",
        ));
    }
    let new = NewSession {
        client: own.client_ip,
        now: now_ms(),
    };
    let fresh = || Session::new(new.now, own.client_ip.to_string(), "", "");
    if !sess
        .login(own.manager, cfg, identity, new, fresh, None)
        .await?
    {
        return Err(ProxyError::LoginRefused(
            "the session ended during the login",
        ));
    }
    audit("login", sess.key(), sess.user(), None);
    Ok(redirect(StatusCode::SEE_OTHER, &login.return_to))
}

fn unavailable(e: OidcError) -> ProxyError {
    tracing::warn!(error = %e, "OIDC issuer unavailable");
    ProxyError::IssuerUnavailable
}

fn internal(e: OidcError) -> ProxyError {
    ProxyError::Internal {
        what: "cannot start a login",
        source: Box::new(e),
    }
}
