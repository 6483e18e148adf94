//! Certificate choice by SNI: exact name, then the `*.` wildcard covering
//! one more label, then the default certificate.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::HostPattern;

#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after the first label, e.g. `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    pub fn add(&mut self, host: &HostPattern, key: Arc<CertifiedKey>) {
        match host {
            HostPattern::Exact(h) => {
                self.exact.insert(h.clone(), key);
            }
            HostPattern::Wildcard(suffix) => {
                self.wildcard
                    .insert(suffix.trim_start_matches('.').to_string(), key);
            }
            HostPattern::Any => self.default = key,
        }
    }

    /// The certificate for a server name (already lower-case from rustls).
    pub fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(hello.server_name()))
    }
}
