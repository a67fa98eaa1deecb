//! bridgectl: argument definitions and dispatch. Each subcommand group lives
//! in its own module of the library.

use std::process::ExitCode;

use bridgectl::dev::cli::DevCommand;
use bridgectl::output::Format;
use clap::{Parser, Subcommand};

/// Operators' CLI for recordengine-bridge.
#[derive(Debug, Parser)]
#[command(name = "bridgectl", version, about)]
struct Cli {
    /// Prints results as JSON on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole bundle locally on 127.0.0.1: an AWS emulator with the deployed template,
    /// the RecordEngine simulator and the destination sinks.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Lists, shows and redrives failed messages (failure records of the dead-letter queues).
    #[command(subcommand)]
    Dlq(bridgectl::dlq::DlqCommand),
    /// Shows a document's timeline from upload to each destination's result.
    Doc(bridgectl::doc::DocArgs),
    /// Checks which routing rules fire on a payload, offline.
    #[command(subcommand)]
    Rules(bridgectl::rules::RulesCommand),
    /// Uploads local files to RecordEngine through the same path as S3 drops.
    Upload(bridgectl::upload::UploadArgs),
    /// Runs the reconciliation sweep and prints its report.
    Sweep(bridgectl::sweep::SweepArgs),
}

/// Exit status after the reader closed stdout early, as in `bridgectl dlq list | head`. It is
/// the status a shell reports for `cat` or `grep` ended by SIGPIPE there (128 + 13).
const BROKEN_PIPE_EXIT: i32 = 141;

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,bridgectl=info")),
        )
        .init();
    let format = if cli.json { Format::Json } else { Format::Table };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(command) => bridgectl::dev::cli::run(command, format).await,
            Command::Dlq(command) => bridgectl::dlq::run(command, format).await,
            Command::Doc(args) => bridgectl::doc::run(args, format).await,
            Command::Rules(command) => bridgectl::rules::run(command, format).await,
            Command::Upload(args) => bridgectl::upload::run(args, format).await,
            Command::Sweep(args) => bridgectl::sweep::run(args, format).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs a panic hook that ends the process quietly when printing to stdout failed because the
/// reader closed the pipe, and leaves every other panic to the default hook.
///
/// Rust ignores SIGPIPE, so `println!` panics on EPIPE. The subcommands print with `println!`
/// throughout, and restoring the default SIGPIPE action instead would also let a peer that closes
/// a socket kill `bridgectl dev up`, whose local servers run in this process.
fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(is_stdout_broken_pipe) {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        default_hook(info);
    }));
}

/// Checks whether a panic message is the one `println!` raises when stdout is a closed pipe.
fn is_stdout_broken_pipe(message: &str) -> bool {
    let broken_pipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
    message.starts_with("failed printing to stdout") && message.contains(&broken_pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_message_is_recognised() {
        assert!(is_stdout_broken_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_stdout_broken_pipe(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe("index out of bounds"));
    }
}
