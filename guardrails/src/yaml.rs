//! YAML in and out, through `serde-saphyr`.
//!
//! Reading: duplicate keys are errors (a second `privileged:` key must not
//! shadow the first unnoticed), and YAML 1.1 booleans (`yes`, `on`) read as
//! booleans, as `kubectl` reads them. Writing: strings that a YAML 1.1 reader
//! would take for another type (`"true"`, `"53"`, `"on"`) are quoted, so label
//! values like `"true"` survive `kubectl apply`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// YAML that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// Malformed YAML, or YAML of the wrong shape; the message carries the
    /// line and column.
    #[error("invalid YAML: {0}")]
    Parse(String),
    /// A value could not be written as YAML.
    #[error("cannot write YAML: {0}")]
    Serialize(String),
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads one YAML document into `T`.
///
/// # Errors
///
/// [`YamlError::Parse`] with a one-line message naming the location.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| YamlError::Parse(one_line(e)))
}

/// Reads every document of a YAML stream as JSON values (empty documents are
/// skipped).
///
/// # Errors
///
/// [`YamlError::Parse`] with a one-line message naming the location.
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, YamlError> {
    serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| YamlError::Parse(one_line(e)))
}

/// Writes one value as a YAML document (ending in a newline).
///
/// # Errors
///
/// [`YamlError::Serialize`].
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    let mut out = serde_saphyr::to_string(value).map_err(|e| YamlError::Serialize(one_line(e)))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Joins documents into one stream, separated by `---` lines.
pub fn join_documents(docs: &[String]) -> String {
    docs.join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted_and_round_trip() {
        let v = json!({"a": "true", "b": "53", "c": "on", "d": "kube-dns", "e": true, "f": 53, "g": "yes", "h": "null", "i": "1.10"});
        let text = to_string(&v).expect("serialises");
        let back: serde_json::Value = from_str(&text).expect("parses");
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = from_str::<serde_json::Value>("a: 1\na: 2\n").expect_err("duplicate");
        assert!(e.to_string().contains("invalid YAML"), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }

    #[test]
    fn yaml_1_1_booleans_read_as_booleans() {
        let v: serde_json::Value = from_str("privileged: yes\n").expect("parses");
        assert_eq!(v, json!({"privileged": true}));
    }

    #[test]
    fn streams_skip_empty_documents() {
        let docs = documents("---\na: 1\n---\n---\nb: 2\n").expect("parses");
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
    }
}
