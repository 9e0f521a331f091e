//! A probe backed by a closure, for library users with their own check.

use std::time::{Duration, Instant};

use super::{HealthProbe, ProbeOutcome, ProbeStatus};

/// A probe that calls a closure.
///
/// The closure gets the timeout the gate allows and is trusted to honour it.
///
/// ```
/// use kubesafe_health_gate::probe::{FnProbe, HealthProbe, ProbeStatus};
/// use std::time::Duration;
///
/// let mut probe = FnProbe::from_result("always fine", || Ok(()));
/// assert_eq!(probe.check(Duration::from_secs(1)).status, ProbeStatus::Healthy);
///
/// let mut probe = FnProbe::from_result("etcd", || Err("etcd: connection refused".to_owned()));
/// assert_eq!(probe.check(Duration::from_secs(1)).status, ProbeStatus::Unhealthy);
/// ```
pub struct FnProbe<F> {
    name: String,
    f: F,
}

impl<F> std::fmt::Debug for FnProbe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnProbe").field("name", &self.name).finish()
    }
}

impl<F: FnMut(Duration) -> ProbeOutcome> FnProbe<F> {
    /// A probe whose closure builds the whole [`ProbeOutcome`].
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            f,
        }
    }
}

/// The closure type behind [`FnProbe::from_result`].
pub type BoxedProbeFn = Box<dyn FnMut(Duration) -> ProbeOutcome + Send>;

impl FnProbe<BoxedProbeFn> {
    /// A probe from a closure returning `Ok(())` when healthy and
    /// `Err(reason)` when unhealthy.
    pub fn from_result<G>(name: impl Into<String>, mut g: G) -> Self
    where
        G: FnMut() -> Result<(), String> + Send + 'static,
    {
        Self::new(
            name,
            Box::new(move |_timeout: Duration| {
                let started = Instant::now();
                match g() {
                    Ok(()) => ProbeOutcome::new(ProbeStatus::Healthy, "ok", started.elapsed()),
                    Err(reason) => {
                        ProbeOutcome::new(ProbeStatus::Unhealthy, reason, started.elapsed())
                    }
                }
            }),
        )
    }
}

impl<F: FnMut(Duration) -> ProbeOutcome> HealthProbe for FnProbe<F> {
    fn describe(&self) -> String {
        format!("closure `{}`", self.name)
    }

    fn check(&mut self, timeout: Duration) -> ProbeOutcome {
        (self.f)(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_sees_the_timeout_and_its_state_persists() {
        let mut calls = 0;
        let mut p = FnProbe::new("counter", |timeout: Duration| {
            calls += 1;
            assert_eq!(timeout, Duration::from_millis(123));
            if calls >= 2 {
                ProbeOutcome::healthy("second call")
            } else {
                ProbeOutcome::unhealthy("first call")
            }
        });
        assert_eq!(
            p.check(Duration::from_millis(123)).status,
            ProbeStatus::Unhealthy
        );
        assert_eq!(
            p.check(Duration::from_millis(123)).status,
            ProbeStatus::Healthy
        );
        assert_eq!(p.describe(), "closure `counter`");
    }
}
