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

fn run(config: &std::path::Path) -> i32 {
    let _logs = cloakroom::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
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
