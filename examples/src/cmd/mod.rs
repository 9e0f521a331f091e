//! One module per subcommand family. Each exposes an `Args` type (clap) and
//! `run(args) -> ExitCode`, printing a one-line `kubesafe: error: ...` to
//! stderr on failure.

pub(crate) mod audit;
pub(crate) mod demo;
pub(crate) mod edit;
pub(crate) mod execute;
pub(crate) mod guardrails;
pub(crate) mod remediate;
pub(crate) mod sign;
