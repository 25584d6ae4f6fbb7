//! The `throttle` executable: reads the command line and runs what it asks for, the server
//! ([`throttle::server::serve`]) or a client subcommand (`throttle lock`, `throttle status`).
//! Everything else is in the library (`lib.rs`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use throttle::cli::{self, Command};
use throttle::{client_cli, server};

/// The static musl build allocates with mimalloc (the default feature `mimalloc`): musl's own
/// allocator takes one global lock, and with it the static build often served half the requests
/// per second on a busy machine (README, Performance). Other targets keep the platform's.
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            let help = match std::env::args().nth(1).as_deref() {
                Some(word @ ("lock" | "status")) => format!("throttle {word} --help"),
                _ => "throttle --help".to_owned(),
            };
            eprintln!("throttle: {error}\nTry '{help}' for more information.");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        Command::HelpFor(topic) => {
            print!("{}", topic.help());
            ExitCode::SUCCESS
        }
        Command::Lock(options) => client_cli::lock(options),
        Command::Status(options) => client_cli::status(options),
        Command::Version => {
            println!("throttle {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve(options) => match server::serve(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("throttle: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
