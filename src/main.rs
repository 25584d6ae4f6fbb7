//! The `throttle` executable: reads the command line and runs what it asks for. A first word
//! `lock`, `status` or `help` is a client subcommand (`throttle-cli`); anything else, no
//! arguments included, serves (`throttle-server`). Nothing else happens here.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::process::ExitCode;

use throttle_server::options;

/// The static musl build allocates with mimalloc (the default feature `mimalloc`): musl's own
/// allocator takes one global lock, and with it the static build often served half the requests
/// per second on a busy machine (README, Performance). Other targets keep the platform's.
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let first = args.first().and_then(|word| word.to_str()).unwrap_or("");
    let help = match first {
        "lock" | "status" => format!("throttle {first} --help"),
        _ => "throttle --help".to_owned(),
    };
    let outcome = match throttle_cli::parse(args.clone()) {
        Some(parsed) => parsed.map(client),
        None => options::parse(args).map(server),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("throttle: {error}\nTry '{help}' for more information.");
        ExitCode::from(2)
    })
}

/// Runs a client subcommand.
fn client(command: throttle_cli::Command) -> ExitCode {
    use throttle_cli::Command;
    match command {
        Command::Help => print(options::HELP),
        Command::HelpFor(topic) => print(topic.help()),
        Command::Lock(lock) => with_stderr_log(|| throttle_cli::lock(lock)),
        Command::Status(status) => with_stderr_log(|| throttle_cli::status(status)),
    }
}

/// Runs the server, or prints what the server's options asked for.
fn server(command: options::Command) -> ExitCode {
    match command {
        options::Command::Help => print(options::HELP),
        options::Command::Version => {
            println!("throttle {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        options::Command::Serve(options) => match throttle_server::server::serve(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("throttle: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Warnings of the client crate (a failed heartbeat, a restore) go to stderr in the server's
/// format; `THROTTLE_LOG` changes the level.
fn with_stderr_log(run: impl FnOnce() -> ExitCode) -> ExitCode {
    match throttle_server::logging::init_stderr(throttle_server::logging::LevelFilter::Warn) {
        Ok(()) => run(),
        Err(error) => {
            eprintln!("throttle: {error}");
            ExitCode::from(throttle_cli::exit::USAGE)
        }
    }
}

fn print(text: &str) -> ExitCode {
    print!("{text}");
    ExitCode::SUCCESS
}
