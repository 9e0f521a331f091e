//! The canonical error codes, serialised exactly as their names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A canonical error code. `Serialize`/`Deserialize`/`Display` use exactly the upper-case
/// names (`"RATE_LIMIT_EXCEEDED"`, ...).
///
/// | code | meaning | suggested HTTP status | `Retry-After` |
/// |------|---------|-----------------------|---------------|
/// | `RATE_LIMIT_EXCEEDED` | the action type's rate limit is used up | 429 | yes |
/// | `UNAUTHORIZED` | bad MAC, unknown key id, expired / not yet valid / too long-lived | 401 | no |
/// | `FORBIDDEN` | authentic, but the namespace is not allowed | 403 | no |
/// | `CONFLICT` | replayed nonce, or idempotency key reused for a different action | 409 | no |
/// | `RETRY_LATER` | a dependency (replay store, policy engine) cannot answer now | 503 | when known |
/// | `POLICY_BLOCKED` | the policy decision refused the action | 403 | no |
/// | `SCHEMA_VALIDATION_FAILED` | malformed envelope or action | 422 | no |
/// | `INVARIANT_VIOLATION` | the action would break a cluster invariant | 409 | no |
/// | `BUDGET_EXCEEDED` | a disruption/change budget is used up | 429 | when known |
/// | `HITL_REQUIRED` | a human must approve the action | 403 | no |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `RATE_LIMIT_EXCEEDED`
    #[serde(rename = "RATE_LIMIT_EXCEEDED")]
    RateLimitExceeded,
    /// `UNAUTHORIZED`
    #[serde(rename = "UNAUTHORIZED")]
    Unauthorized,
    /// `FORBIDDEN`
    #[serde(rename = "FORBIDDEN")]
    Forbidden,
    /// `CONFLICT`
    #[serde(rename = "CONFLICT")]
    Conflict,
    /// `RETRY_LATER`
    #[serde(rename = "RETRY_LATER")]
    RetryLater,
    /// `POLICY_BLOCKED`
    #[serde(rename = "POLICY_BLOCKED")]
    PolicyBlocked,
    /// `SCHEMA_VALIDATION_FAILED`
    #[serde(rename = "SCHEMA_VALIDATION_FAILED")]
    SchemaValidationFailed,
    /// `INVARIANT_VIOLATION`
    #[serde(rename = "INVARIANT_VIOLATION")]
    InvariantViolation,
    /// `BUDGET_EXCEEDED`
    #[serde(rename = "BUDGET_EXCEEDED")]
    BudgetExceeded,
    /// `HITL_REQUIRED`
    #[serde(rename = "HITL_REQUIRED")]
    HitlRequired,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::RateLimitExceeded,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Conflict,
        ErrorCode::RetryLater,
        ErrorCode::PolicyBlocked,
        ErrorCode::SchemaValidationFailed,
        ErrorCode::InvariantViolation,
        ErrorCode::BudgetExceeded,
        ErrorCode::HitlRequired,
    ];

    /// The code's wire name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RetryLater => "RETRY_LATER",
            ErrorCode::PolicyBlocked => "POLICY_BLOCKED",
            ErrorCode::SchemaValidationFailed => "SCHEMA_VALIDATION_FAILED",
            ErrorCode::InvariantViolation => "INVARIANT_VIOLATION",
            ErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
            ErrorCode::HitlRequired => "HITL_REQUIRED",
        }
    }

    /// The suggested HTTP status (see the table above).
    pub const fn http_status(&self) -> u16 {
        match self {
            ErrorCode::RateLimitExceeded | ErrorCode::BudgetExceeded => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::PolicyBlocked | ErrorCode::HitlRequired => 403,
            ErrorCode::Conflict | ErrorCode::InvariantViolation => 409,
            ErrorCode::RetryLater => 503,
            ErrorCode::SchemaValidationFailed => 422,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_exactly() {
        let expected = [
            "RATE_LIMIT_EXCEEDED",
            "UNAUTHORIZED",
            "FORBIDDEN",
            "CONFLICT",
            "RETRY_LATER",
            "POLICY_BLOCKED",
            "SCHEMA_VALIDATION_FAILED",
            "INVARIANT_VIOLATION",
            "BUDGET_EXCEEDED",
            "HITL_REQUIRED",
        ];
        for (code, name) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{name}\""));
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
            let back: ErrorCode = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(back, *code);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"unauthorized\"").is_err());
    }
}
