//! Shared helpers for the kubesafe benchmarks (see `benches/`).
