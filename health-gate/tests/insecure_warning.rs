//! `insecure_skip_tls_verify` is an explicit opt-in, logged loudly. Its own
//! test binary with a single test: tracing caches each call site's interest
//! process-wide, so a scoped subscriber in one of many parallel tests can
//! miss events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use kubesafe_health_gate::probe::HttpProbe;

/// Collects the fields of WARN-level events (a minimal subscriber, no
/// dependency).
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut t = Text(String::new());
            event.record(&mut t);
            self.0.lock().unwrap().push(t.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn insecure_is_an_explicit_opt_in_logged_loudly() {
    let warnings = Arc::new(Warnings::default());
    tracing::subscriber::set_global_default(Arc::clone(&warnings)).unwrap();
    HttpProbe::builder("https://127.0.0.1:6443/livez")
        .build()
        .unwrap();
    assert!(warnings.0.lock().unwrap().is_empty());
    HttpProbe::builder("https://127.0.0.1:6443/livez")
        .insecure_skip_tls_verify()
        .build()
        .unwrap();
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("NOT verified"), "{seen:?}");
    assert!(seen[0].contains("127.0.0.1:6443"), "{seen:?}");
}
