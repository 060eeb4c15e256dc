//! The chat client binary: `chat-client [--host H] [--port P] [--name N]`.

use std::process::ExitCode;

use argh::FromArgs;
use chat_client::{Args, EXIT_USAGE, resolve, run};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let command = argv
        .first()
        .and_then(|arg0| std::path::Path::new(arg0).file_name()?.to_str())
        .unwrap_or("chat-client");
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let args = match Args::from_args(&[command], &rest) {
        Ok(args) => args,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return ExitCode::SUCCESS;
        }
        Err(early) => {
            eprintln!("error: {}; try --help", early.output.trim_end());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut config = match resolve(&args, |key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = config.read_password() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    // Exit at once rather than return: the thread reading stdin may still be blocked in a read.
    std::process::exit(i32::from(run(&config)))
}
