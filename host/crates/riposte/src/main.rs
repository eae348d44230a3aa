//! The `riposte` binary: the command line over the crates of `host/crates`.

mod cli;
mod demo;

use clap::Parser;
use cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli);
    // On a worker thread of the runtime, not on the thread `main` blocks: what the command
    // spawns (each plugin invocation) then starts on the same worker without waking another
    // thread, and stepping a worker aside for a database step is the same everywhere.
    let error = match tokio::spawn(cli::run(cli)).await {
        Ok(Ok(())) => return std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => error,
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(failed) => anyhow::Error::new(failed).context("the command's task was cancelled"),
    };
    eprintln!("error: {error:#}");
    std::process::ExitCode::FAILURE
}
