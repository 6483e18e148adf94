//! HTTP building blocks every layer uses (named `wire`, not `http`, so it
//! is never mistaken for the `http` crate), as small pure functions with the
//! RFCs they follow: header operations ([`headers`]), the request's host
//! ([`host`]), origins and absolute URLs between the client's and the
//! upstream's ([`origin`]), the one normalised path ([`path`]) and
//! percent-encoding ([`percent`]), and the client's request body as HTTP/1.1 or
//! HTTP/2 delivers it ([`body`]). Nothing here knows about routes,
//! sessions or listeners.

pub mod body;
pub mod headers;
pub mod host;
pub mod origin;
pub mod path;
pub mod percent;
