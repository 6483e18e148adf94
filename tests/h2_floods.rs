//! HTTP/2 abuse (RFC 9113 §10.5) against the real binary, with raw frames:
//! PING, SETTINGS and PRIORITY floods get GOAWAY `ENHANCE_YOUR_CALM` from
//! cloakroom's guard (`src/server/h2guard.rs`); rapid reset and
//! CONTINUATION floods, which hyper's `h2` bounds itself, are kept here as
//! regression tests; a client within the budget is answered as usual.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /` for `localhost` in HPACK, from the static table only.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x87, 0x84, 0x01, 9];
    b.extend_from_slice(b"localhost");
    b
}

/// What the server sent until it closed or `secs` passed: (type, flags,
/// payload) per frame, and whether the connection ended.
async fn read_frames(tls: &mut Tls, secs: u64) -> (Vec<(u8, u8, Vec<u8>)>, bool) {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        if raw.len() > 64 << 20 {
            break;
        }
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while raw.len() >= at + 9 {
        let len = (usize::from(raw[at]) << 16)
            | (usize::from(raw[at + 1]) << 8)
            | usize::from(raw[at + 2]);
        if raw.len() < at + 9 + len {
            break;
        }
        frames.push((raw[at + 3], raw[at + 4], raw[at + 9..at + 9 + len].to_vec()));
        at += 9 + len;
    }
    (frames, closed)
}

fn goaway_code(frames: &[(u8, u8, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, _, _)| *kind == GOAWAY)
        .map(|(_, _, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

async fn h2_raw(proxy: &TestProxy) -> Tls {
    let mut tls = proxy.tls(&[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    tls
}

/// Sends `count` copies of `one` in large writes; a write error (the
/// server closed) ends it early.
async fn flood(tls: &mut Tls, one: &[u8], count: usize) {
    let batch: Vec<u8> = one.repeat(500);
    for _ in 0..count.div_ceil(500) {
        if tls.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = tls.flush().await;
}

async fn proxy() -> (Upstream, TestProxy) {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    (up, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_gets_goaway_enhance_your_calm() {
    let (_up, proxy) = proxy().await;
    let mut tls = h2_raw(&proxy).await;
    flood(&mut tls, &frame(PING, 0, 0, &[7; 8]), 20_000).await;
    let (frames, closed) = read_frames(&mut tls, 10).await;
    assert_eq!(
        goaway_code(&frames),
        Some(ENHANCE_YOUR_CALM),
        "{} frames",
        frames.len()
    );
    assert!(closed, "the connection stays open after GOAWAY");
    let acks = frames
        .iter()
        .filter(|(k, f, _)| *k == PING && f & 1 == 1)
        .count();
    assert!(acks < 2_000, "answered {acks} pings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_priority_floods_get_goaway_enhance_your_calm() {
    let (_up, proxy) = proxy().await;
    let mut tls = h2_raw(&proxy).await;
    flood(&mut tls, &frame(SETTINGS, 0, 0, &[]), 20_000).await;
    let (frames, closed) = read_frames(&mut tls, 10).await;
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM));
    assert!(closed);

    let mut tls = h2_raw(&proxy).await;
    // PRIORITY for stream 3 depending on stream 0, weight 16.
    flood(&mut tls, &frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 15]), 20_000).await;
    let (frames, closed) = read_frames(&mut tls, 10).await;
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM));
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_within_the_budget_is_answered() {
    let (_up, proxy) = proxy().await;
    let mut tls = h2_raw(&proxy).await;
    let mut out = Vec::new();
    for i in 0..20u8 {
        out.extend(frame(PING, 0, 0, &[i; 8]));
    }
    // END_STREAM | END_HEADERS
    out.extend(frame(HEADERS, 0x5, 1, &get_block()));
    tls.write_all(&out).await.unwrap();
    let (frames, _) = read_frames(&mut tls, 2).await;
    assert_eq!(goaway_code(&frames), None, "a polite client got GOAWAY");
    let acks = frames
        .iter()
        .filter(|(k, f, _)| *k == PING && f & 1 == 1)
        .count();
    assert_eq!(acks, 20);
    assert!(
        frames.iter().any(|(k, _, _)| *k == HEADERS),
        "no response to GET /"
    );
    // And an ordinary client, through hyper.
    let r = send2(
        &mut proxy.h2().await,
        get("localhost", "/").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, http::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off() {
    let (_up, proxy) = proxy().await;
    let mut tls = h2_raw(&proxy).await;
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let stream = 2 * i + 1;
        burst.extend(frame(HEADERS, 0x5, stream, &get_block()));
        burst.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    let _ = tls.write_all(&burst).await;
    let (frames, closed) = read_frames(&mut tls, 10).await;
    assert!(
        goaway_code(&frames).is_some(),
        "no GOAWAY after 5000 resets"
    );
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off() {
    let (_up, proxy) = proxy().await;
    let mut tls = h2_raw(&proxy).await;
    // HEADERS without END_HEADERS, then CONTINUATION frames of junk
    // literal headers that never end: far past max_request_header_bytes.
    let mut first = get_block();
    first.extend([0x40, 1, b'x', 1, b'y']);
    tls.write_all(&frame(HEADERS, 0x1, 1, &first))
        .await
        .unwrap();
    let mut junk = Vec::new();
    for _ in 0..200 {
        junk.extend([0x40, 3, b'a', b'b', b'c', 60]);
        junk.extend([b'v'; 60]);
    }
    flood(&mut tls, &frame(CONTINUATION, 0, 1, &junk), 2_000).await;
    let (frames, closed) = read_frames(&mut tls, 10).await;
    assert!(
        closed || goaway_code(&frames).is_some(),
        "an endless header block was read on"
    );
}
