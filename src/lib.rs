//! cloakroom: a reverse proxy that terminates TLS and sessions in front of
//! unmodified web applications.
//!
//! # Layout
//!
//! The modules follow a request's journey: [`server`] accepts connections
//! and runs TLS ([`tls`]) and HTTP/1.1 or HTTP/2; [`proxy`] runs the
//! per-request phases over one context — inspect, [`route`], session, guard,
//! upstream request, send over the pooled [`upstream`] client, respond;
//! [`session`] holds every session rule (the cookie codec, the one `Cookie`
//! scan, the jar, the decision on a response, CSRF, audit events) over any
//! [`store`] backend; [`identity`] sets the trusted identity headers and
//! signs the identity assertion; [`auth`] answers `/.cloakroom/` (the
//! local login form checks passwords with [`password`] and counts failures
//! in [`throttle`]; [`oidc`] is the relying party for single sign-on);
//! [`admin`] is the admin listener.
//!
//! Imports only run down these layers, never back up (top first):
//!
//! ```text
//! main → cli → app                 assembly, signals, listeners wired to services
//! admin                            the admin API, served by server's loop
//! server                           accept loops, h1/h2 connections, redirect listener
//! proxy                            the phase order and one file per phase
//! auth                             /.cloakroom/ endpoints
//! state                            State (swapped on reload) and Shared
//! identity, route, tls, store,     header names, route table, certificates, backends,
//!   oidc                           the OpenID Connect relying party
//! password, throttle               argon2id on a bounded pool; failed-login counters
//! reply                            response bodies, own pages, ProxyError → response
//! session                          session rules and the SessionStore contract
//! upstream, telemetry              pooled client; logs and access lines
//! config                           proxy.toml → validated Config, once
//! wire, metrics, net,              pure HTTP helpers, Prometheus, socket writes,
//!   private_file                   0600 key files
//! ```
//!
//! `fuzzing` (hidden) stands beside the layers: entry points for the fuzz
//! targets, calling into session, upstream, config, route and wire.

// No unsafe code but one FFI call, allowed where it is
// (`server::trim`: glibc's `malloc_trim`).
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod oidc;
pub mod password;
pub mod private_file;
pub mod proxy;
pub mod reply;
pub mod route;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod upstream;
pub mod wire;
