//! A real OpenID Provider for the OIDC tests: panva's `oidc-provider`
//! (installed by `scripts/test.sh` into `target/oidc-provider`), run by
//! `tests/oidc/op.mjs` on `127.0.0.1:0` ([`Op`]), and a cookie-keeping
//! plain-HTTP client that logs in through its own login and consent pages
//! ([`OpBrowser`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The client secret the test provider registers for `cloakroom`.
pub const SECRET: &str = "test-client-secret-7d1f0c";

fn module() -> PathBuf {
    let m = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/oidc-provider/node_modules/oidc-provider/lib/index.js");
    assert!(
        m.exists(),
        "{} is missing: run scripts/test.sh, or npm install --prefix target/oidc-provider oidc-provider@9.13.3",
        m.display()
    );
    m
}

pub use super::free_port;

/// The provider process; killed on drop.
pub struct Op {
    pub issuer: String,
    child: Child,
}

impl Op {
    /// `mode`: `normal`, `expired` or `wrong-aud` (see tests/oidc/op.mjs).
    pub fn start(mode: &str, redirect_uri: &str) -> Op {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/op.mjs");
        let opts = serde_json::json!({
            "module": module(), "redirect_uri": redirect_uri,
            "client_secret": SECRET, "mode": mode,
        });
        let mut child = Command::new("node")
            .arg(script)
            .arg(opts.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("issuer ") {
                    let _ = tx.send(issuer.to_string());
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OpenID Provider printed its issuer");
        Op { issuer, child }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-HTTP client for the provider that keeps its cookies.
#[derive(Default)]
pub struct OpBrowser {
    cookies: HashMap<String, String>,
}

pub struct OpResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl OpBrowser {
    pub async fn send(&mut self, method: Method, url: &str, form: Option<&str>) -> OpResp {
        let uri: http::Uri = url.parse().unwrap();
        let auth = uri.authority().unwrap().clone();
        let tcp = TcpStream::connect(auth.as_str()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(uri.path_and_query().unwrap().as_str())
            .header(header::HOST, auth.as_str())
            .header(header::ACCEPT, "text/html");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            req = req.header(header::COOKIE, c.join("; "));
        }
        if form.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(Bytes::from(form.unwrap_or("").to_string())))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("the provider answers")
            .unwrap();
        let (parts, body) = resp.into_parts();
        for sc in parts.headers.get_all(header::SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            let (nv, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (n, v) = nv.split_once('=').unwrap();
            if attrs
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970")
            {
                self.cookies.remove(n.trim());
            } else {
                self.cookies
                    .insert(n.trim().to_string(), v.trim().to_string());
            }
        }
        let body = body.collect().await.unwrap().to_bytes();
        OpResp {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Follows `auth_url` through the provider's login page (as `user`)
    /// and consent page until the provider redirects to the proxy; returns
    /// that redirect (`https://localhost:PORT/.cloakroom/callback?…`).
    pub async fn login(&mut self, op: &Op, auth_url: &str, user: &str) -> String {
        let absolute = |u: &str| match u.starts_with('/') {
            true => format!("{}{u}", op.issuer),
            false => u.to_string(),
        };
        let mut next = (Method::GET, auth_url.to_string(), None::<String>);
        for _ in 0..12 {
            let r = self.send(next.0.clone(), &next.1, next.2.as_deref()).await;
            if r.status.is_redirection() {
                let loc = absolute(r.headers[header::LOCATION].to_str().unwrap());
                if loc.starts_with("https://") {
                    return loc;
                }
                next = (Method::GET, loc, None);
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            let action = r
                .body
                .split_once("action=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(a, _)| absolute(a))
                .unwrap_or_else(|| panic!("no form on the provider's page: {}", r.body));
            let form = if r.body.contains("name=\"login\"") {
                format!("prompt=login&login={user}&password=any-password")
            } else if r.body.contains("value=\"consent\"") {
                "prompt=consent".to_string()
            } else {
                panic!("unexpected page: {}", r.body)
            };
            next = (Method::POST, action, Some(form));
        }
        panic!("the provider never redirected back");
    }
}

/// The value of `name` in a URL's query (not decoded).
pub fn query_value<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `url` with the query parameter `name` set to `value`.
pub fn with_query_value(url: &str, name: &str, value: &str) -> String {
    let old = query_value(url, name).unwrap();
    url.replacen(&format!("{name}={old}"), &format!("{name}={value}"), 1)
}
