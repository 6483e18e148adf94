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
    /// Read a password on stdin (not echoed on a terminal) and print an argon2id PHC string for users.toml.
    HashPassword,
    /// Print a fresh random 32-byte key (base64url).
    GenSecret,
    /// Ask /readyz on the configured admin_listen: exit 0 when ready, 1 otherwise.
    Healthcheck,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, cloakroom.1 (roff).
    Man,
    /// Print docs/configuration.md, or with --schema docs/proxy.schema.json,
    /// generated from the key table in src/config/reference.rs.
    #[command(hide = true)]
    ConfigReference {
        /// The JSON Schema instead of the Markdown reference.
        #[arg(long)]
        schema: bool,
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
    let n = config.routes.len();
    let noun = if n == 1 { "route" } else { "routes" };
    println!("{}: ok ({n} {noun})", path.display());
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

/// Why `hash-password` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum HashPasswordError {
    #[error("cannot read the password: {0}")]
    Read(#[source] std::io::Error),
    #[error("the password is empty")]
    Empty,
    #[error("the two passwords differ")]
    Mismatch,
    #[error(transparent)]
    Hash(#[from] crate::password::PasswordError),
}

/// `cloakroom hash-password`: on a terminal the password is asked twice
/// without echo; from a pipe the first line is read (its line ending
/// removed, nothing else). Prints the argon2id PHC string.
pub fn hash_password() -> Result<String, HashPasswordError> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(HashPasswordError::Read)?;
        let again =
            rpassword::prompt_password("Password (again): ").map_err(HashPasswordError::Read)?;
        if first != again {
            return Err(HashPasswordError::Mismatch);
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(HashPasswordError::Read)?;
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        line
    };
    if password.is_empty() {
        return Err(HashPasswordError::Empty);
    }
    Ok(crate::password::hash(password.as_bytes())?)
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

/// `cloakroom man`: one page, `cloakroom.1`, generated from the CLI
/// definition; each visible subcommand is a paragraph of COMMANDS rather
/// than a `cloakroom-NAME(1)` page of its own, so nothing it names is
/// missing.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    man_sections(&mut page)?;
    // Each clap_mangen section repeats the same two-line preamble; once is enough.
    let page = String::from_utf8_lossy(&page);
    let (head, rest) = page.split_at(page.find(".TH").unwrap_or(0));
    out.write_all(head.as_bytes())?;
    out.write_all(rest.replace(head, "").as_bytes())
}

fn man_sections(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let args: String = sub
            .get_positionals()
            .map(|a| format!(" \\fI{}\\fR", a.get_id().as_str().to_uppercase()))
            .collect();
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            out,
            ".TP\n\\fBcloakroom {}\\fR{args}\n{}",
            roff(sub.get_name()),
            roff(&about)
        )?;
    }
    writeln!(out, ".SH SIGNALS\n{}", roff(SIGNALS))?;
    writeln!(out, ".SH FILES\n.TP\n\\fI./proxy.toml\\fR\n{}", roff(FILES))?;
    page.render_version_section(out)
}

const SIGNALS: &str = "SIGHUP reloads the configuration and certificates (an invalid new \
configuration is logged and the running one kept; keys read at start, such as the \
listen addresses, apply at the next restart and a reload that changes one warns). \
SIGTERM and SIGINT stop accepting, drain in-flight requests for up to \
server.shutdown_grace, flush the session store and exit 0.";

const FILES: &str = "The default configuration file; --config names another. Every key \
is described in docs/configuration.md, and docs/proxy.schema.json is its JSON Schema \
for editors.";

/// Text as a roff paragraph: backslashes and hyphens escaped, no line
/// starting with a control character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// `cloakroom config-reference [--schema]`.
pub fn config_reference(schema: bool) -> String {
    if schema {
        crate::config::reference::json_schema()
    } else {
        crate::config::reference::markdown()
    }
}
