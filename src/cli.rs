//! The command line (SPEC §2). `main.rs` parses it and maps outcomes to exit
//! codes; everything here returns a typed result.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use clap::{CommandFactory, Parser, Subcommand};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "cloakroom",
    version,
    about = "A reverse proxy that terminates TLS and sessions"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit: 0 valid, 2 invalid.
    Check,
    /// Print a fresh random 32-byte key (base64url).
    GenSecret,
    /// Ask /readyz on the configured admin_listen: exit 0 when ready, 1 otherwise.
    Healthcheck,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Exit status of `check` for an invalid configuration.
pub const EXIT_INVALID: i32 = 2;

/// `cloakroom check`: every problem on stderr, one per line; warnings (keys
/// this build does not act on yet) too, prefixed `warning:`, without
/// failing.
pub fn check(path: &std::path::Path) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            for err in e.errors() {
                eprintln!("{err}");
            }
            return EXIT_INVALID;
        }
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    // Certificates that exist must load; missing ones are generated at start.
    let generated =
        config.tls.self_signed_if_missing && !config.tls.cert.exists() && !config.tls.key.exists();
    if !generated {
        if let Err(e) = crate::tls::server_config(&config.tls) {
            eprintln!("{}: tls: {e}", path.display());
            return EXIT_INVALID;
        }
    }
    println!("{}: ok ({} routes)", path.display(), config.routes.len());
    0
}

/// `cloakroom healthcheck`: 0 when the admin listener says ready.
pub fn healthcheck(path: &std::path::Path) -> i32 {
    let addr = match Config::load(path) {
        Ok(c) => match c.server.admin_listen {
            Some(a) if a.ip().is_unspecified() => {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
            }
            Some(a) => a,
            None => {
                eprintln!("server.admin_listen is disabled; nothing to ask");
                return 1;
            }
        },
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return 1,
    };
    if rt.block_on(crate::admin::healthcheck(addr)) {
        0
    } else {
        eprintln!("not ready: {addr}/readyz");
        1
    }
}

/// `cloakroom gen-secret`.
pub fn gen_secret() -> Result<String, ring::error::Unspecified> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
}

/// `cloakroom completions SHELL`.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "cloakroom", &mut std::io::stdout());
    let _ = std::io::stdout().flush();
}
