//! The embedded store at scale (figures in `docs/performance.md`): the
//! record codec, creates and touches through the store, logins (durable
//! creates) under concurrency, bytes on disk and RSS per session, and
//! start-up of the real binary on the full database.
//!
//!     nice -n 10 cargo bench --bench store            # 1,000,000 sessions
//!     STORE_BENCH_SESSIONS=100000 cargo bench --bench store
//!
//! Prints one line per figure; no assertions. The database lives in a
//! temporary directory under `target/` (the disk the project builds on).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::session::jar::Jar;
use cloakroom::session::setcookie::SetCookie;
use cloakroom::session::{now_ms, Identity, Session, SessionId, SessionKey};
use cloakroom::store::{EmbeddedStore, SessionStore};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const TASKS: usize = 4;

/// A session as a Flask app behind the proxy leaves it: a browser's user
/// agent, one signed `session` cookie in the jar; every tenth logged in.
fn session(i: usize, now: u64) -> Arc<Session> {
    let mut s = Session::new(now, "203.0.113.7".into(), UA, "app");
    s.expires_at = now + 30 * 60_000;
    let cookie = format!(
        "session=eyJjc3JmX3Rva2VuIjoiN2YzYWI0{i:012}In0.ZmE2Ng.Xb2c3Q4lT1oTq9bG7wq2NnF0YkU; HttpOnly; Path=/"
    );
    let mut jar = Jar::default();
    jar.store(&SetCookie::parse(&cookie).unwrap(), "/", now, 65_536);
    s.jars.push(("app".into(), jar));
    if i.is_multiple_of(10) {
        s.identity = Some(Identity {
            user: format!("user{i}"),
            email: Some(format!("user{i}@example.com")),
            groups: vec!["staff".into(), "billing".into()],
        });
    }
    Arc::new(s)
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn file_bytes(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

fn codec(now: u64) {
    let s = session(1, now);
    let n = 200_000;
    let postcard = postcard::to_allocvec(&*s).unwrap();
    let json = serde_json::to_vec(&*s).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(postcard::from_bytes::<Session>(&postcard).unwrap());
    }
    let pc_ns = t.elapsed().as_nanos() / n;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(serde_json::from_slice::<Session>(&json).unwrap());
    }
    let json_ns = t.elapsed().as_nanos() / n;
    println!(
        "codec: postcard {} B, decode {pc_ns} ns; serde_json {} B, decode {json_ns} ns",
        postcard.len(),
        json.len()
    );
}

/// Runs `work(task, range)` on `TASKS` tasks over `0..n`; the elapsed time.
async fn spread<F, Fut>(n: usize, work: F) -> Duration
where
    F: Fn(usize, std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let t = Instant::now();
    let each = n.div_ceil(TASKS);
    let handles: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(work(t, t * each..((t + 1) * each).min(n))))
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    t.elapsed()
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:.0}/s ({:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// Starts the binary on `dir/proxy.toml`; (time until it listens, RSS).
fn start_binary(dir: &Path) -> (Duration, u64) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .current_dir(dir)
        .env("CLOAKROOM_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut took = None;
    for line in out.lines() {
        let line = line.unwrap();
        if line.contains("\"session store loaded\"") {
            println!("  {line}");
        }
        if line.contains("\"listening\"") && line.contains("https") {
            took = Some(t.elapsed());
            break;
        }
    }
    let took = took.expect("the proxy did not start");
    std::thread::sleep(Duration::from_millis(300));
    let rss = rss_kib(&child.id().to_string());
    let _ = child.kill();
    let _ = child.wait();
    (took, rss)
}

/// `count` logins (durable creates) from 64 clients at once: the rate and
/// the latency percentiles.
async fn logins(store: &Arc<EmbeddedStore>, count: usize, now: u64, salt: usize) -> String {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let t = Instant::now();
    let handles: Vec<_> = (0..64)
        .map(|c| {
            let (store, lat) = (store.clone(), latencies.clone());
            tokio::spawn(async move {
                for i in (c..count).step_by(64) {
                    let s = session((i * 10 + salt) * 10, now);
                    let k = SessionId::generate().unwrap().key();
                    let t = Instant::now();
                    store.create(&k, &s).await.unwrap();
                    lat.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let took = t.elapsed();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{} 64 at once, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rate(count, took),
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 99 / 100]),
        ms(lat[lat.len() - 1])
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("STORE_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = now_ms();
    codec(now);
    std::fs::create_dir_all("target/bench-store").unwrap();
    let dir = tempfile::tempdir_in("target/bench-store").unwrap();
    let path = dir.path().join("data/sessions.db");

    let store = Arc::new(EmbeddedStore::open(&path, 2 * n).unwrap());
    let keys: Arc<Vec<SessionKey>> = Arc::new(
        (0..n)
            .map(|_| SessionId::generate().unwrap().key())
            .collect(),
    );
    let sessions: Arc<Vec<Arc<Session>>> = Arc::new(
        (0..n)
            .map(|i| {
                let mut s = session(i, now);
                Arc::make_mut(&mut s).identity = None;
                s
            })
            .collect(),
    );
    let accepted = spread(n, |_, r| {
        let (store, keys, sessions) = (store.clone(), keys.clone(), sessions.clone());
        async move {
            for i in r {
                store.create(&keys[i], &sessions[i]).await.unwrap();
            }
        }
    })
    .await;
    let t = Instant::now();
    store.flush().await.unwrap();
    let committed = accepted + t.elapsed();
    println!(
        "anonymous creates: accepted {}, on disk {}",
        rate(n, accepted),
        rate(n, committed)
    );
    drop(sessions);

    let accepted = spread(n, |_, r| {
        let (store, keys) = (store.clone(), keys.clone());
        async move {
            for i in r {
                store
                    .touch(&keys[i], now + 1, now + 40 * 60_000)
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    // Logins while the touches are still being written.
    let during = logins(&store, 5_000.min(n), now, 1).await;
    let t = Instant::now();
    store.flush().await.unwrap();
    println!(
        "touches: accepted {}; the backlog was on disk {:.2} s after the last",
        rate(n, accepted),
        (accepted + t.elapsed()).as_secs_f64() - accepted.as_secs_f64()
    );
    println!("logins during that backlog: {during}");
    let idle = logins(&store, 20_000.min(n), now, 2).await;
    println!("logins on an idle writer: {idle}");
    let total = n + 5_000.min(n) + 20_000.min(n);
    println!(
        "on disk while open (file + WAL): {} B per session ({} MiB)",
        file_bytes(&path) / total as u64,
        file_bytes(&path) >> 20
    );
    drop(store);
    println!(
        "on disk after close: {} B per session ({} MiB)",
        file_bytes(&path) / total as u64,
        file_bytes(&path) >> 20
    );

    let t = Instant::now();
    let store = EmbeddedStore::open(&path, 2 * n).unwrap();
    println!(
        "EmbeddedStore::open with {} sessions: {:.2} s",
        store.count().await.unwrap(),
        t.elapsed().as_secs_f64()
    );
    drop(store);

    // The real binary: once on an empty store, once on the full one.
    let empty = dir.path().join("empty");
    for (d, db) in [
        (&empty, "data/sessions.db"),
        (&dir.path().to_path_buf(), "data/sessions.db"),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(
            d.join("proxy.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\
                 [session]\nmax_sessions = {}\n\
                 [store]\nbackend = \"embedded\"\npath = \"{db}\"\n\
                 [[route]]\nupstream = \"http://127.0.0.1:9\"\n",
                2 * n
            ),
        )
        .unwrap();
    }
    let (t_empty, rss_empty) = start_binary(&empty);
    let (t_full, rss_full) = start_binary(dir.path());
    println!(
        "binary start to listening: empty store {} ms, {total} sessions {} ms",
        t_empty.as_millis(),
        t_full.as_millis()
    );
    println!(
        "binary RSS: empty {} MiB, with {total} sessions {} MiB: {} B per session",
        rss_empty / 1024,
        rss_full / 1024,
        (rss_full - rss_empty) * 1024 / total as u64
    );
}
