//! HTTP details around the proxy core: message framing kept intact across
//! the hop (HEAD, Expect: 100-continue, h2 uploads without a length), the
//! `hsts` and Host rules (SPEC §3), and the access log (SPEC §11).

mod support;

use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_head_keeps_the_connection_in_sync() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let mut h1 = proxy.h1().await;
    let head = Request::head("/download?bytes=1000")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let r = send1(&mut h1, head).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body.is_empty());
    // The next response on the same connection is read with the right framing.
    let r = send1(
        &mut h1,
        get("localhost", "/after-head").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.echo().uri, "/after-head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_expect_100_continue_is_honoured() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let head = "POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = within(10, "100 Continue", tls.read(&mut buf))
        .await
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    let (raw, _) = exchange(&mut tls, b"hello", 10).await;
    let text = format!("{first}{}", String::from_utf8_lossy(&raw));
    assert!(
        text.contains("HTTP/1.1 200 OK") && text.ends_with("\r\n\r\n5"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_h2_upload_without_length_streams_to_the_upstream() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let mut h2 = proxy.h2().await;
    // A body with no exact size: the upstream gets it chunked.
    let body = Repeat::unsized_body(8 << 20);
    let req = Request::post(format!("{}/count", proxy.origin()))
        .body(body)
        .unwrap();
    let r = send2(&mut h2, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), (8u64 << 20).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hsts_can_be_disabled() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["hsts = \"\""]).await;
    let r = proxy.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("strict-transport-security").is_none());
    let r = proxy.get("/.cloakroom/x").await;
    assert!(r.header("strict-transport-security").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_request_without_host_is_400() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let (raw, closed) = exchange(&mut tls, b"GET / HTTP/1.0\r\n\r\n", 10).await;
    assert!(
        closed,
        "HTTP/1.0 without keep-alive is closed after the response"
    );
    assert_eq!(statuses(&raw), [400], "{}", String::from_utf8_lossy(&raw));
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_one_access_line_per_request_without_query() {
    let up = Upstream::start("app").await;
    let mut proxy = proxy_to(&up, &[]).await;
    assert_eq!(
        proxy.get("/a/../logged?secret=hunter2").await.status,
        StatusCode::OK
    );
    assert_eq!(
        proxy.get("/.cloakroom/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    proxy
        .wait_log(10, |v| v["target"] == "access" && v["status"] == 404)
        .await
        .expect("no access line for the 404");
    let lines = proxy.access_logs();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    for key in [
        "time",
        "route",
        "method",
        "path",
        "status",
        "duration_ms",
        "session",
        "user",
    ] {
        assert!(ok.get(key).is_some(), "{key} missing: {ok}");
    }
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/logged");
    assert_eq!(ok["status"], 200);
    assert!(ok["duration_ms"].is_number());
    assert!(ok["session"].is_null() && ok["user"].is_null());
    assert!(
        !ok.to_string().contains("hunter2"),
        "the query string is never logged: {ok}"
    );
    assert!(lines[1]["route"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_h2_streams_are_served_concurrently() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let h2 = proxy.h2().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut h2 = h2.clone();
        let uri = format!("{}/slow?ms=200&i={i}", proxy.origin());
        tasks.push(tokio::spawn(async move {
            send2(&mut h2, Request::get(uri).body(empty()).unwrap()).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = within(30, "a multiplexed stream", t).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.echo().uri, format!("/slow?ms=200&i={i}"));
    }
    assert_eq!(up.hits(), 100);
}
