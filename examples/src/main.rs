//! `kubesafe` — the command-line tool of the kubesafe crates.
//!
//! Each subcommand lives in its own module under `cmd/`; `main` only parses
//! arguments, installs logging (to stderr, `RUST_LOG` / `-v`) and maps the
//! command's result to the process exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Change a Kubernetes control plane without breaking it.
#[derive(Debug, Parser)]
#[command(name = "kubesafe", version, about, long_about = None)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// NetworkPolicy and Pod Security namespace-label bundles.
    Guardrails(cmd::guardrails::GuardrailsArgs),
    /// Offline Pod Security admission: check and harden Pods and workloads.
    Pss(cmd::guardrails::PssArgs),
    /// Least-privilege RBAC from the actions a tool performs.
    Rbac(cmd::guardrails::RbacArgs),
    /// Sign an action into an envelope (HMAC-SHA256 over RFC 8785 canonical JSON).
    Sign(cmd::sign::SignArgs),
    /// Verify a signed envelope (or a legacy hex signature) and print the action.
    Verify(cmd::sign::VerifyArgs),
    /// Edit a static-pod manifest or kubelet config: lossless, atomic, locked.
    Edit(cmd::edit::EditArgs),
    /// Tamper-evident audit logs: append, verify, query, stats, checkpoint, keygen.
    Audit(cmd::audit::AuditArgs),
    /// Edit a static-pod manifest under a health gate; roll back if the component fails.
    Remediate(Box<cmd::remediate::RemediateArgs>),
    /// The whole flow against a SIMULATED node: applied, rolled back, audited.
    Demo(cmd::demo::DemoArgs),
    /// Verify, admit and carry out a signed remediation action (dry run by default); audit it.
    Execute(cmd::execute::ExecuteArgs),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    // Started as `kube-apiserver` by `kubesafe demo`'s node simulator: be the
    // simulated API server (a SIMULATION, never a real one).
    if let Some(code) = kubesafe_health_gate::simulator::dispatch_by_argv0() {
        return code;
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Guardrails(args) => cmd::guardrails::run_guardrails(args),
        Command::Pss(args) => cmd::guardrails::run_pss(args),
        Command::Rbac(args) => cmd::guardrails::run_rbac(args),
        Command::Sign(args) => cmd::sign::run_sign(args),
        Command::Verify(args) => cmd::sign::run_verify(args),
        Command::Edit(args) => cmd::edit::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Remediate(args) => cmd::remediate::run(*args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Execute(args) => cmd::execute::run(args),
    }
}
