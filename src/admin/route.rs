//! The authenticated admin calls (SPEC §10), read from a request's method
//! and target. The admin port is loopback by default but every byte here is
//! treated as hostile: the target is bounded, a user name is decoded
//! exactly (a malformed escape or non-UTF-8 is refused, not guessed at) and
//! held to the rules of an identity value (SPEC §8.4), and a handle must be
//! 16 hex digits.

use http::Method;

use crate::session::codec::parse_handle;
use crate::session::Identity;
use crate::wire::percent::percent_decode_exact;

/// Longest path, and longest query, the admin API reads (a user name of
/// 256 bytes is at most 768 percent-encoded).
pub const MAX_TARGET: usize = 1024;

/// One call of the authenticated API.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET /sessions?user=NAME`
    List { user: String },
    /// `DELETE /sessions/{handle}`: the key prefix the handle names.
    Revoke { handle: [u8; 8] },
    /// `DELETE /users/{name}/sessions`
    RevokeUser { user: String },
    /// `POST /reload`
    Reload,
}

/// Why a request is no call.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// The path is a call, the method is not; the methods it allows.
    Method(&'static str),
    BadRequest(&'static str),
    TooLong,
}

const BAD_USER: &str =
    "the user name must be 1 to 256 bytes of UTF-8, percent-encoded, without control characters";

/// The call a request names.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Call, Refused> {
    if path.len() > MAX_TARGET || query.is_some_and(|q| q.len() > MAX_TARGET) {
        return Err(Refused::TooLong);
    }
    let only = |allowed: Method, allow: &'static str| {
        if *method == allowed {
            Ok(())
        } else {
            Err(Refused::Method(allow))
        }
    };
    if path == "/sessions" {
        only(Method::GET, "GET")?;
        let raw = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("user="))
            .ok_or(Refused::BadRequest(
                "the query must name a user: ?user=NAME",
            ))?;
        return Ok(Call::List {
            user: user_name(raw, true)?,
        });
    }
    if path == "/reload" {
        only(Method::POST, "POST")?;
        return Ok(Call::Reload);
    }
    if let Some(handle) = path.strip_prefix("/sessions/") {
        only(Method::DELETE, "DELETE")?;
        // A malformed handle names no session: 404, like an unknown one.
        let handle = parse_handle(handle).ok_or(Refused::NotFound)?;
        return Ok(Call::Revoke { handle });
    }
    if let Some(name) = path
        .strip_prefix("/users/")
        .and_then(|p| p.strip_suffix("/sessions"))
        .filter(|name| !name.contains('/'))
    {
        only(Method::DELETE, "DELETE")?;
        return Ok(Call::RevokeUser {
            user: user_name(name, false)?,
        });
    }
    Err(Refused::NotFound)
}

/// A user name from a path segment or (`form`: `+` is a space) a query.
fn user_name(raw: &str, form: bool) -> Result<String, Refused> {
    percent_decode_exact(raw, form)
        .filter(|u| Identity::valid_value(u))
        .ok_or(Refused::BadRequest(BAD_USER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: Option<&str>) -> Result<Call, Refused> {
        parse(&Method::GET, path, query)
    }

    fn delete(path: &str) -> Result<Call, Refused> {
        parse(&Method::DELETE, path, None)
    }

    #[test]
    fn s10_calls() {
        assert_eq!(
            get("/sessions", Some("x=1&user=al%C3%AFce+b")),
            Ok(Call::List {
                user: "alïce b".into()
            })
        );
        assert_eq!(
            delete("/sessions/00112233445566aA"),
            Ok(Call::Revoke {
                handle: [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xaa]
            })
        );
        assert_eq!(
            delete("/users/a%2Fb+c/sessions"),
            Ok(Call::RevokeUser {
                user: "a/b+c".into()
            })
        );
        assert_eq!(parse(&Method::POST, "/reload", None), Ok(Call::Reload));
    }

    #[test]
    fn s10_malformed_handles_are_not_found() {
        for path in [
            "/sessions/",
            "/sessions/0011",
            "/sessions/00112233445566zz",
            "/sessions/00112233445566aa/x",
        ] {
            assert_eq!(delete(path), Err(Refused::NotFound), "{path}");
        }
    }

    #[test]
    fn s10_wrong_methods_and_unknown_paths() {
        assert_eq!(
            parse(&Method::POST, "/sessions", Some("user=a")),
            Err(Refused::Method("GET"))
        );
        assert_eq!(get("/reload", None), Err(Refused::Method("POST")));
        assert_eq!(
            get("/sessions/0011223344556677", None),
            Err(Refused::Method("DELETE"))
        );
        for path in ["/", "/users/a", "/users/a/b/sessions", "/users//sessions/x"] {
            assert_eq!(delete(path), Err(Refused::NotFound), "{path}");
        }
    }

    #[test]
    fn s10_hostile_input_is_bounded() {
        let long = "a".repeat(MAX_TARGET + 1);
        assert_eq!(get("/sessions", Some(&long)), Err(Refused::TooLong));
        assert_eq!(get(&format!("/{long}"), None), Err(Refused::TooLong));
        for bad in ["", "%zz", "%FF", "a%0Ab", &"b".repeat(257)] {
            let q = format!("user={bad}");
            assert!(
                matches!(get("/sessions", Some(&q)), Err(Refused::BadRequest(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            get("/sessions", None),
            Err(Refused::BadRequest(_))
        ));
        assert!(matches!(
            delete("/users/%00/sessions"),
            Err(Refused::BadRequest(_))
        ));
        assert!(matches!(
            delete("/users//sessions"),
            Err(Refused::BadRequest(_))
        ));
    }
}
