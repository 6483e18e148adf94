//! cloakroom: a reverse proxy that terminates TLS and sessions in front of
//! unmodified web applications.
//!
//! # Layout
//!
//! The modules follow a request's journey:
//! [`server`] accepts connections and runs TLS ([`tls`]) and HTTP/1.1 or
//! HTTP/2; [`proxy`] holds the per-request phases — route, forward over the
//! pooled [`upstream`] client, rewrite the response. [`session`] keeps the
//! server-side session and cookie jar over a [`store`]; [`identity`] sets
//! the trusted identity headers; [`auth`] answers `/.cloakroom/`. [`config`] turns
//! `proxy.toml` into a validated [`config::Config`] once; [`app`] assembles
//! the pieces, reloads and drains; [`cli`] and [`telemetry`] are the edges.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod reply;
pub mod route;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wire;
