//! The `cloakroom` binary: parse the command line, call the library, map
//! outcomes to exit codes.

use clap::Parser;

use cloakroom::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    let config = cloakroom::app::config_path(cli.config);
    let code = match cli.command {
        Some(Command::Check) => cli::check(&config),
        Some(Command::GenSecret) => match cli::gen_secret() {
            Ok(s) => {
                println!("{s}");
                0
            }
            Err(_) => {
                eprintln!("the system random generator failed");
                1
            }
        },
        Some(Command::HashPassword) => match cli::hash_password() {
            Ok(phc) => {
                println!("{phc}");
                0
            }
            Err(e) => {
                eprintln!("cloakroom hash-password: {e}");
                1
            }
        },
        Some(Command::Healthcheck) => cli::healthcheck(&config),
        Some(Command::Completions { shell }) => {
            cli::completions(shell);
            0
        }
        Some(Command::Man) => match cli::man(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cannot write the man page: {e}");
                1
            }
        },
        Some(Command::ConfigReference { schema }) => {
            print!("{}", cli::config_reference(schema));
            0
        }
        None => run(&config),
    };
    std::process::exit(code);
}

/// One worker thread per CPU the process may use; with a single CPU (a
/// pinned process, a one-core container or `TOKIO_WORKER_THREADS=1`) the
/// runtime is tokio's current-thread scheduler, which does the same work
/// without the cross-thread queues and wake-ups a multi-thread pool keeps
/// for a second worker that never comes (docs/performance.md). Blocking
/// work (argon2, reloads) goes to tokio's blocking pool either way.
/// Returns the builder and the number of worker threads.
fn runtime_builder() -> (tokio::runtime::Builder, usize) {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let builder = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    (builder, workers)
}

fn run(config: &std::path::Path) -> i32 {
    let _logs = cloakroom::telemetry::init();
    let (mut builder, workers) = runtime_builder();
    let runtime = match builder.enable_all().build() {
        Ok(rt) => {
            let scheduler = match workers {
                1 => "current-thread",
                _ => "multi-thread",
            };
            tracing::info!(worker_threads = workers, scheduler, "runtime started");
            rt
        }
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(cloakroom::app::run(config)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "cloakroom cannot start");
            eprintln!("cloakroom: {e}");
            1
        }
    }
}
