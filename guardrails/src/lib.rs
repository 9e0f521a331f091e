//! `kubesafe-guardrails` — part of [kubesafe](https://github.com/kubesafe/kubesafe).
#![warn(missing_docs)]

pub mod netpol;
pub mod pss;
pub mod rbac;
pub mod yaml;
