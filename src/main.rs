use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stoke::cli::Cli::parse();
    match stoke::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
