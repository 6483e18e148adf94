//! Entry points for the fuzz targets under `fuzz/` (cargo-fuzz, nightly)
//! and for `tests/fuzz_corpus.rs`, which replays their corpora on stable
//! in the test suite. Each takes arbitrary bytes, drives one parser of
//! untrusted input the way the proxy does, and panics only when an
//! invariant breaks (a crash the fuzzer reports). Not part of the proxy's
//! request path; hidden from the docs.

use std::path::Path;
use std::sync::LazyLock;

use crate::config::{Config, SameSite};
use crate::route::RouteTable;
use crate::server::h1guard::{Framing, Verdict};
use crate::session::codec::Verified;
use crate::session::jar::Jar;
use crate::session::setcookie::{rewrite_for_browser, SetCookie};
use crate::session::Keyring;
use crate::wire::path;

/// A fixed keyring: verification of arbitrary cookie values.
static KEYS: LazyLock<Keyring> = LazyLock::new(|| Keyring::new(&[7; 32], &[vec![9; 32]]));

/// The session cookie codec: arbitrary values never verify unless they are
/// an encoding; an encoding verifies to the same id.
pub fn cookie_codec(data: &[u8]) {
    if let Some(Verified::Current(id) | Verified::Fallback(id)) = KEYS.verify(data) {
        let again = KEYS.encode(&id);
        let back = KEYS.verify(again.as_bytes());
        assert!(
            matches!(back, Some(Verified::Current(ref same)) if same.key() == id.key()),
            "a re-encoding does not verify to the same id"
        );
    }
}

/// `Set-Cookie` parse and the browser rewrite: the rewrite of anything
/// parseable keeps its name and always carries `Secure` and `HttpOnly`.
pub fn set_cookie(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sc) = SetCookie::parse(raw) else {
        return;
    };
    let _ = sc.expiry(1_700_000_000_000);
    let out = rewrite_for_browser(raw, SameSite::Lax, false);
    assert!(out.starts_with(sc.name), "{raw:?} → {out:?}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("; secure") && lower.contains("; httponly"),
        "{raw:?} → {out:?}"
    );
}

/// The jar: each line a `Set-Cookie` received for a request path (the
/// first byte of the line picks it); the jar never holds more than its
/// cap, and what it sends for a path is a valid header value.
pub fn jar(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    const CAP: usize = 4096;
    let paths = ["/", "/a", "/a/b", "/admin/x"];
    let mut jar = Jar::default();
    let mut now = 1_700_000_000_000;
    for line in text.lines() {
        let path = paths[line.len() % paths.len()];
        now += 1_000;
        if let Ok(sc) = SetCookie::parse(line) {
            jar.store(&sc, path, now, CAP);
        }
        assert!(jar.bytes() <= CAP, "the jar grew past its cap");
        for p in paths {
            let _ = jar.joined_if_all_match(p, now);
        }
    }
    jar.prune(now + 10 * 365 * 86_400_000);
}

/// The upstream HTTP/1.1 response parser and body decoder: the first byte
/// picks where the bytes split in two reads and whether the request was
/// `HEAD`; a decoded body is never longer than what was received.
pub fn upstream_h1(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let split = usize::from(pick >> 1) * bytes.len() / 128;
    if let Ok((status, body)) = crate::upstream::decode_buffered(bytes, split, pick & 1 == 1) {
        assert!((100..1000).contains(&status));
        assert!(body <= bytes.len() as u64, "more body than bytes");
    }
}

/// The HTTP/1.1 framing guard's tracker, with a 256-byte head limit: the
/// first byte picks the size of the reads the rest arrives in; the
/// verdict and where it falls, the request heads counted and whether the
/// guard stopped judging are the same as when it all arrives at once.
pub fn h1_framing(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let whole = follow(bytes, bytes.len());
    assert_eq!(
        follow(bytes, usize::from(pick)),
        whole,
        "the verdict depends on the reads"
    );
    if let (Some((at, _)), _, _) = whole {
        assert!(at < bytes.len(), "refused past the end");
    }
}

fn follow(bytes: &[u8], read: usize) -> (Option<(usize, Verdict)>, usize, bool) {
    let mut f = Framing::new(256);
    let mut offset = 0;
    for part in bytes.chunks(read.max(1)) {
        if let Some((n, v)) = f.feed(part) {
            return (Some((offset + n, v)), f.heads(), f.is_off());
        }
        offset += part.len();
    }
    (None, f.heads(), f.is_off())
}

/// Config loading and validation: any text either loads or yields errors
/// that each name a key or line; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = Config::parse(Path::new("fuzz.toml"), text) {
        assert!(!errors.0.is_empty(), "a failed load without errors");
    }
}

/// Path normalisation and routing: a normalised path is absolute,
/// normalises to itself, holds no dot segment, and selects a route under
/// the prefix it matched.
pub fn path_route(data: &[u8]) {
    static ROUTES: LazyLock<Config> = LazyLock::new(|| {
        let text = "[[route]]\npath_prefix = \"/api\"\nupstream = \"http://127.0.0.1:1\"\n\
                    [[route]]\nhost = \"*.example.com\"\nupstream = \"http://127.0.0.1:2\"\n\
                    [[route]]\nupstream = \"http://127.0.0.1:3\"\n";
        Config::parse(Path::new("routes.toml"), text).expect("a valid route table")
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, target) = text.split_once('\n').unwrap_or(("localhost", text));
    let (raw_path, _query) = path::split_target(target);
    let Some(norm) = path::normalise(raw_path) else {
        return;
    };
    assert!(norm.starts_with('/'), "{raw_path:?} → {norm:?}");
    assert_eq!(
        path::normalise(&norm).as_deref(),
        Some(&*norm),
        "not idempotent"
    );
    assert!(
        !norm.split('/').any(|s| s == "." || s == ".."),
        "{raw_path:?} → {norm:?}"
    );
    let table = RouteTable::new(&ROUTES.routes);
    if let Some(route) = table.select(&host.to_ascii_lowercase(), &norm) {
        assert!(path::prefix_matches(&route.path_prefix, &norm));
    }
}
