//! The proxy's own HTML pages, for a browser navigation that the proxy
//! answers itself. Static text: a page names no upstream address, port or
//! error (those go to the operator's log), and costs no allocation.

/// 502 to a navigation: the upstream refused or reset the connection.
pub const UPSTREAM_DOWN: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>502 Bad Gateway</title></head>
<body>
<h1>The application is not answering</h1>
<p>cloakroom is running, but the application behind it is not answering.
Try again in a moment.</p>
<p>Running this proxy yourself? Its log says which application to start.</p>
</body>
</html>
"#;

/// 504 to a navigation: no response headers within
/// `upstream_response_timeout`.
pub const UPSTREAM_SLOW: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>504 Gateway Timeout</title></head>
<body>
<h1>The application is not answering in time</h1>
<p>cloakroom is running, but the application behind it did not answer in
time. Try again in a moment.</p>
</body>
</html>
"#;
