//! `kubesafe-guardrails` — part of [kubesafe](https://github.com/kubesafe/kubesafe).
//!
//! This crate is under construction.
