//! The `rollbot` binary: parse the command line, load config, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;
use rollbot::cli::{self, Cli};
use rollbot::daemon::ServeSettings;

fn main() -> ExitCode {
    rollbot::install_crypto_provider();
    let cli = Cli::parse();
    let settings = match rollbot::config::load_from_process_env::<ServeSettings>(
        cli.config.as_deref(),
    ) {
        Ok(settings) => settings,
        Err(error) => {
            if matches!(cli.command, cli::Command::Serve(_)) && error.json_logs {
                // The daemon's log pipeline expects one JSON object per line.
                rollbot::init_logging("error", true);
                let problems: Vec<String> =
                    error.problems.iter().map(ToString::to_string).collect();
                tracing::error!(error = %error, problems = ?problems, exit_code = 2, "rollbot cannot start.");
            } else {
                eprintln!("error: {error}");
            }
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, cli::Command::Serve(_));
    let level = match cli.verbose {
        // A daemon's default log is its events; the CLI's default is quiet.
        0 if serving && settings.core.log.level == "warn" => "info".to_owned(),
        0 => settings.core.log.level.clone(),
        1 => "info".to_owned(),
        _ => "debug".to_owned(),
    };
    rollbot::init_logging(&level, settings.core.log.json);
    // One thread: a CLI run is a short chain of requests, and a current-thread runtime avoids
    // cross-thread wake-ups (measured in registry-notes.md). The daemon too: with a hundred
    // rollbacks at once it uses a quarter of a CPU (the registry is what is busy), and a
    // worker per CPU measured no faster and 1-2 MB more at peak (README, "The daemon under
    // load").
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(3);
        }
    };
    let code = runtime.block_on(cli::run(cli, &settings));
    ExitCode::from(code)
}
