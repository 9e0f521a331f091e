//! The simulated kube-apiserver as its own executable (feature `simulator`).
//! A SIMULATION for tests and demos; see `kubesafe_health_gate::simulator`.

fn main() -> std::process::ExitCode {
    kubesafe_health_gate::simulator::serve_apiserver(std::env::args_os().skip(1))
}
