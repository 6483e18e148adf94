//! Route selection (SPEC §3): the most specific host class that has a route
//! matching the path wins (exact, then `*.` wildcard — longest suffix first —
//! then any host), and within it the longest matching `path_prefix`.

use std::collections::HashMap;

use crate::config::{HostPattern, Route};

use crate::wire::host::strip_port;
use crate::wire::path::prefix_matches;

/// Routes indexed by host class; built once per config load.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact: HashMap<String, Vec<usize>>,
    /// `(".example.com", routes)`, longest suffix first.
    wildcard: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                HostPattern::Exact(h) => exact.entry(h.clone()).or_default().push(i),
                HostPattern::Wildcard(s) => wildcard.entry(s.clone()).or_default().push(i),
                HostPattern::Any => any.push(i),
            }
        }
        let by_prefix_len =
            |v: &mut Vec<usize>| v.sort_by_key(|&i| std::cmp::Reverse(routes[i].path_prefix.len()));
        exact.values_mut().for_each(by_prefix_len);
        let mut wildcard: Vec<_> = wildcard.into_iter().collect();
        wildcard.iter_mut().for_each(|(_, v)| by_prefix_len(v));
        wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        by_prefix_len(&mut any);
        Self {
            routes: routes.to_vec(),
            exact,
            wildcard,
            any,
        }
    }

    /// The route for a host (any case, port ignored) and normalised path.
    pub fn select(&self, host: &str, path: &str) -> Option<&Route> {
        // Every route is for any host: the host need not be looked at.
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return self.first_match(&self.any, path);
        }
        let host = strip_port(host);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let exact = match self.exact.is_empty() {
            true => None,
            false => self.exact.get(host),
        };
        let mut candidates = exact
            .into_iter()
            .chain(
                self.wildcard
                    .iter()
                    .filter(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, v)| v),
            )
            .chain(std::iter::once(&self.any));
        candidates.find_map(|group| self.first_match(group, path))
    }

    /// The longest-prefix route of one host class (kept longest first).
    fn first_match(&self, group: &[usize], path: &str) -> Option<&Route> {
        group
            .iter()
            .map(|&i| &self.routes[i])
            .find(|r| prefix_matches(&r.path_prefix, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable {
        let mut text = String::new();
        for (host, prefix, up) in routes {
            text.push_str(&format!("[[route]]\nhost = \"{host}\"\npath_prefix = \"{prefix}\"\nupstream = \"http://{up}\"\n"));
        }
        RouteTable::new(&Config::parse(Path::new("/x/p.toml"), &text).unwrap().routes)
    }

    fn pick(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.select(host, path).map(|r| r.upstream.to_string())
    }

    #[test]
    fn host_class_precedence_then_longest_prefix() {
        let t = table(&[
            ("", "/", "any:1"),
            ("", "/api", "anyapi:1"),
            ("*.example.com", "/", "wild:1"),
            ("*.b.example.com", "/", "wildb:1"),
            ("app.example.com", "/admin", "exactadmin:1"),
        ]);
        assert_eq!(
            pick(&t, "app.example.com", "/admin/x").unwrap(),
            "exactadmin:1"
        );
        // The exact class has no route for "/", so the wildcard class wins.
        assert_eq!(pick(&t, "APP.example.com:8443", "/").unwrap(), "wild:1");
        assert_eq!(pick(&t, "x.b.example.com", "/").unwrap(), "wildb:1");
        assert_eq!(pick(&t, "example.com", "/api/v1").unwrap(), "anyapi:1");
        assert_eq!(pick(&t, "other", "/apiary").unwrap(), "any:1");
    }

    #[test]
    fn any_host_only_tables_choose_by_path_alone() {
        let t = table(&[
            ("", "/", "root:1"),
            ("", "/api", "api:1"),
            ("", "/api/v2", "v2:1"),
        ]);
        for host in ["app.example.com", "APP.EXAMPLE.COM:8443", "[::1]:443", ""] {
            assert_eq!(pick(&t, host, "/api/v2/x").unwrap(), "v2:1", "{host}");
            assert_eq!(pick(&t, host, "/api/v1").unwrap(), "api:1", "{host}");
            assert_eq!(pick(&t, host, "/apiary").unwrap(), "root:1", "{host}");
        }
        let t = table(&[("", "/only", "only:1")]);
        assert!(t.select("a.test", "/other").is_none());
    }

    #[test]
    fn no_match_is_none() {
        let t = table(&[("a.test", "/", "a:1")]);
        assert!(t.select("b.test", "/").is_none());
    }

    #[test]
    fn ports_are_ignored() {}
}
