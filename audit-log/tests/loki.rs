//! Loki sink tests (written next).
