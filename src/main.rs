use std::process::ExitCode;

use clap::Parser;
use release_capsule::cli::{Cli, Command};
use release_capsule::commands;
use release_capsule::failure::Failure;
use release_capsule::settings::process_env;

fn main() -> ExitCode {
    // reqwest and octocrab are built without a bundled crypto provider: ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result: Result<(), Failure> = match &cli.command {
        Command::Build(args) => commands::build::run(args, &process_env),
        Command::Publish(args) => commands::publish::run(args, &process_env),
        Command::Verify(args) => commands::verify::run(args, &process_env),
        Command::Pull(args) => commands::pull::run(args, &process_env),
        Command::Action => release_capsule::action::run(&process_env),
        Command::Serve(args) => release_capsule::serve::run(args),
        Command::PublicKey(args) => commands::public_key::run(args, &process_env),
        Command::ExportFreight(args) => commands::gitops::export::run(args, &process_env),
        Command::RecordGate(args) => commands::gitops::gate::run(args, &process_env),
        Command::Preview(args) => commands::preview::run(args, &process_env),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
