//! The session work cloakroom adds to one proxied request, at 10 jar
//! cookies, over a memory store holding 100k sessions (figures in
//! `docs/performance.md`).
//!
//! The parts: cookie verify (`Keyring::verify`; and a repeat of the same
//! cookie on one connection, `Keyring::verify_key`), store lookup
//! (`SessionStore::load`, which shares the stored session), jar merge into the
//! `Cookie` header (`CookieScan` + `upstream_cookie`), and `Set-Cookie`
//! capture (`SetCookie::parse` + `Jar::store`). The whole: the proxy's own
//! session functions in the order `proxy::handle` calls them —
//! `SessionState::begin` (after the one `Cookie` scan), `SessionState::touch`,
//! `upstream_cookie`, `Exchange::capture` — once
//! for a response without `Set-Cookie` and once for one that re-sets a jar
//! cookie (as Flask does on every request that changes its session).
//!
//! `identity_assertion` measures signing one identity assertion (SPEC
//! §8.6a) and reusing a connection's last one.
//!
//! The memory store never waits, so its futures are polled once with a
//! no-op waker instead of running a Tokio runtime whose scheduling is not
//! session work.
//!
//!     cargo bench --bench session -- --warm-up-time 1 --measurement-time 3

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{self, HeaderMap, HeaderValue};

use cloakroom::config::{Config, Route};
use cloakroom::identity::assertion::{Assertion, ConnCache};
use cloakroom::session::capture::Exchange;
use cloakroom::session::cookies::{upstream_cookie, CookieScan};
use cloakroom::session::jar::Jar;
use cloakroom::session::setcookie::SetCookie;
use cloakroom::session::{
    now_ms, Identity, Keyring, Manager, Session, SessionId, SessionKey, SessionState, VerifyCache,
};
use cloakroom::state::State;
use cloakroom::store::{SessionStore, Store};

const SESSIONS: usize = 100_000;
const JAR_COOKIES: usize = 10;
const PATH: &str = "/app/dashboard";
const MAX_JAR_BYTES: usize = 65_536;

/// Polls a future that must be ready at once (the memory store's are).
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory store never waits"),
    }
}

/// A jar-bound `Set-Cookie` like the ones the legacy app sends: eight
/// cookies on `/`, two on `/app`, values of 40–80 bytes.
fn set_cookie(i: usize, version: u64) -> String {
    let path = if i < 8 { "/" } else { "/app" };
    let name = if i == 0 {
        "session".to_string()
    } else {
        format!("c{i}")
    };
    let value = format!("{version:016x}{}", "v".repeat(24 + 8 * (i % 6)));
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax")
}

fn jar(now: u64) -> Jar {
    let mut jar = Jar::default();
    for i in 0..JAR_COOKIES {
        jar.store(
            &SetCookie::parse(&set_cookie(i, 0)).unwrap(),
            "/",
            now,
            MAX_JAR_BYTES,
        );
    }
    assert_eq!(jar.cookies().len(), JAR_COOKIES);
    jar
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: State,
    manager: Manager<Store>,
    /// The session the benchmarked requests carry.
    id: SessionId,
    key: SessionKey,
    cookie_value: String,
    /// The request's `Cookie` header: the session cookie and two of the
    /// browser's own.
    request: HeaderMap,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\
             [session]\nmax_sessions = {}\n\
             [store]\nbackend = \"memory\"\n\
             [[route]]\nupstream = \"http://127.0.0.1:9\"\n",
            2 * SESSIONS
        );
        let config = Config::parse(&path, &text).unwrap();
        cloakroom::tls::ensure_default_cert(&config.tls).unwrap();
        let store = Store::open(&config).unwrap();
        let state = State::build(config).unwrap();
        let manager = Manager::new(store, Keyring::new(&[7u8; 32], &[]));

        let now = now_ms();
        let route = state.config.routes[0].name.clone();
        let mut template = Session::new(now, "127.0.0.1".into(), "bench", &route);
        *template.jar_mut(&route) = jar(now);
        template.expires_at = template.deadline(&state.config.session);
        let template = std::sync::Arc::new(template);
        for _ in 1..SESSIONS {
            let key = SessionId::generate().unwrap().key();
            ready(manager.store.create(&key, &template)).unwrap();
        }
        let id = SessionId::generate().unwrap();
        let key = id.key();
        ready(manager.store.create(&key, &template)).unwrap();
        assert_eq!(ready(manager.store.count()).unwrap(), SESSIONS);

        let cookie_value = manager.keys.encode(&id);
        let mut request = HeaderMap::new();
        let cookie = format!(
            "{}={cookie_value}; theme=dark; _ga=GA1.2.1234567890.1700000000",
            state.config.session.cookie_name
        );
        request.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        Fixture {
            _dir: dir,
            state,
            manager,
            id,
            key,
            cookie_value,
            request,
        }
    }

    fn route(&self) -> &Route {
        &self.state.config.routes[0]
    }

    fn session(&self) -> std::sync::Arc<Session> {
        ready(self.manager.store.load(&self.key)).unwrap().unwrap()
    }

    /// The session phases of one request, as `proxy::handle` runs them.
    /// `response` holds the upstream's headers; `verified` is the client
    /// connection's cookie cache (a fresh one: its first request). Returns
    /// the upstream request's `Cookie` header length so nothing is optimised
    /// away.
    fn request(
        &self,
        mut request: HeaderMap,
        mut response: HeaderMap,
        verified: &VerifyCache,
    ) -> usize {
        let cfg = &self.state.config;
        let route = self.route();
        let scan = CookieScan::new(&request, &cfg.session.cookie_name);
        let counts = scan.counts();
        let mut sess = ready(SessionState::begin(
            &self.manager,
            &cfg.session,
            &scan,
            Some(&route.name),
            verified,
        ))
        .unwrap();
        assert!(sess.live.is_some(), "the session is live");
        let now = now_ms();
        ready(sess.touch(&self.manager, &cfg.session, now, false)).unwrap();
        let jar = sess.live.as_ref().and_then(|f| f.session.jar(&route.name));
        upstream_cookie(
            &mut request,
            counts,
            &cfg.session.cookie_name,
            jar,
            PATH,
            now,
        );
        let exchange = Exchange {
            manager: &self.manager,
            config: cfg,
            route,
            path: PATH,
            login_submission: false,
            status: http::StatusCode::OK,
            form_user: None,
            host: "localhost",
            client_ip: [127, 0, 0, 1].into(),
            user_agent: None,
            now,
        };
        ready(exchange.capture(&mut sess, &mut response)).unwrap();
        request.get(header::COOKIE).map_or(0, |v| v.len())
    }
}

/// The jar merge of one request: the one `Cookie` scan, then the rewrite.
fn merge(headers: &mut HeaderMap, cookie_name: &str, session: &Session, path: &str, now: u64) {
    let counts = CookieScan::new(headers, cookie_name).counts();
    let jar = session.jar(&session.route);
    upstream_cookie(headers, counts, cookie_name, jar, path, now);
}

fn parts(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("session_10_jar_cookies");

    g.bench_function("cookie_verify", |b| {
        b.iter(|| f.manager.keys.verify(black_box(&f.cookie_value)))
    });
    assert!(f.manager.keys.verify(&f.cookie_value).is_some());
    // The same cookie again on one connection: a comparison with the value
    // that verified last.
    let verified = VerifyCache::default();
    g.bench_function("cookie_verify_repeat_on_connection", |b| {
        b.iter(|| {
            f.manager
                .keys
                .verify_key(black_box(f.cookie_value.as_bytes()), &verified)
        })
    });
    assert_eq!(
        f.manager
            .keys
            .verify_key(f.cookie_value.as_bytes(), &verified),
        Some((f.key, None))
    );

    // SHA-256 of the id, then the map lookup and the clone out of it.
    g.bench_function("store_lookup_100k", |b| {
        b.iter(|| ready(f.manager.store.load(&black_box(&f.id).key())))
    });

    // The two halves of that lookup, to see which one costs.
    g.bench_function("store_lookup_part_sha256_of_id", |b| {
        b.iter(|| black_box(&f.id).key())
    });
    let session = f.session();
    g.bench_function("store_lookup_part_session_clone", |b| {
        b.iter(|| black_box(&session).clone())
    });

    let now = now_ms();
    g.bench_function("jar_merge_into_cookie_header", |b| {
        b.iter_batched_ref(
            || f.request.clone(),
            |headers| {
                merge(
                    headers,
                    &f.state.config.session.cookie_name,
                    &session,
                    black_box(PATH),
                    now,
                )
            },
            BatchSize::SmallInput,
        )
    });
    // The usual browser request: only the session cookie, so the jar's
    // joined value (made once per jar change) goes as it is.
    let cookie_name = &f.state.config.session.cookie_name;
    let mut only_session = f.request.clone();
    let own = only_session[header::COOKIE]
        .to_str()
        .unwrap()
        .split("; ")
        .find(|pair| pair.starts_with(&format!("{cookie_name}=")))
        .unwrap()
        .to_owned();
    only_session.insert(header::COOKIE, own.parse().unwrap());
    g.bench_function("jar_merge_session_cookie_only", |b| {
        b.iter_batched_ref(
            || only_session.clone(),
            |headers| merge(headers, cookie_name, &session, black_box(PATH), now),
            BatchSize::SmallInput,
        )
    });
    let mut merged = f.request.clone();
    merge(&mut merged, cookie_name, &session, PATH, now);
    let merged = merged[header::COOKIE].to_str().unwrap();
    assert_eq!(
        merged.matches("; ").count(),
        JAR_COOKIES + 2 - 1,
        "{merged}"
    );
    assert!(!merged.contains(cookie_name.as_str()));

    // Replaces the app's `session` cookie with a new value each time.
    let route_name = &f.route().name;
    let mut jar = session.jar(route_name).unwrap().clone();
    let mut version = 0u64;
    g.bench_function("set_cookie_capture", |b| {
        b.iter_batched(
            || {
                version += 1;
                set_cookie(0, version)
            },
            |raw| {
                let sc = SetCookie::parse(&raw).unwrap();
                jar.store(&sc, PATH, now, MAX_JAR_BYTES)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(jar.cookies().len(), JAR_COOKIES);
    g.finish();
}

fn full_request(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("session_10_jar_cookies");
    g.bench_function("full_request_no_set_cookie", |b| {
        b.iter_batched(
            || (f.request.clone(), HeaderMap::new()),
            |(req, resp)| f.request(req, resp, &VerifyCache::default()),
            BatchSize::SmallInput,
        )
    });
    // Later requests of a keep-alive connection: the cookie was verified.
    let verified = VerifyCache::default();
    g.bench_function("full_request_no_set_cookie_repeat_on_connection", |b| {
        b.iter_batched(
            || (f.request.clone(), HeaderMap::new()),
            |(req, resp)| f.request(req, resp, &verified),
            BatchSize::SmallInput,
        )
    });

    // The upstream re-sets its `session` cookie: the jar changes and the
    // session is written back to the store.
    let mut version = 0u64;
    g.bench_function("full_request_one_set_cookie", |b| {
        b.iter_batched(
            || {
                version += 1;
                let mut resp = HeaderMap::new();
                let sc = HeaderValue::from_str(&set_cookie(0, version)).unwrap();
                resp.insert(header::SET_COOKIE, sc);
                (f.request.clone(), resp)
            },
            |(req, resp)| f.request(req, resp, &VerifyCache::default()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let jar = f.session();
    let cookies = jar.jar(&f.route().name).unwrap().cookies();
    let value = &cookies.iter().find(|c| c.name == "session").unwrap().value;
    assert!(value.starts_with(&format!("{version:016x}")), "{value}");
}

/// SPEC §8.6a: signing one identity assertion, and reusing the one made
/// on the same connection (`ConnCache`).
fn assertion(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("identity_assertion");
    let id = Identity {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["admin".into(), "dev".into()],
    };
    let (host, aud, now) = ("app.example.com", "http://127.0.0.1:5000", now_ms() / 1000);
    for alg in ["ES256", "EdDSA"] {
        let text = format!(
            "[identity]\nassertion_header = \"X-Cloakroom-Assertion\"\nassertion_algorithm = \"{alg}\"\n\
             [[route]]\nupstream = \"{aud}\"\n"
        );
        let config = Config::parse(&dir.path().join("proxy.toml"), &text).unwrap();
        let a = Assertion::load(&config.identity).unwrap().unwrap();
        g.bench_function(format!("sign_{alg}"), |b| {
            b.iter(|| a.token(black_box(&id), "https://app.example.com", aud, now))
        });
        let cache = ConnCache::default();
        let key = SessionKey([7; 32]);
        g.bench_function(format!("reuse_on_connection_{alg}"), |b| {
            b.iter(|| a.token_for(&cache, &key, black_box(&id), host, aud, now))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    assertion(c);
    let f = Fixture::new();
    // Sanity: one request merges 10 jar cookies plus the client's two.
    assert!(f.request(f.request.clone(), HeaderMap::new(), &VerifyCache::default()) > 0);
    parts(c, &f);
    full_request(c, &f);
}

criterion_group!(session, benches);
criterion_main!(session);
