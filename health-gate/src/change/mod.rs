//! Changes the gate can apply and roll back.
//!
//! A [`Change`] is planned first (nothing touched: what will change, whether
//! the kubelet will restart the component at all, which flags the restarted
//! process must carry), then applied, and rolled back if the gate says so.
//! [`FileReplace`] is the generic file-level change of this crate;
//! `ManifestChange` (feature `manifest-edit`) is a lossless
//! `kubesafe-manifest-edit` edit of a static-pod manifest.
//!
//! Both lock `.NAME.lock` beside the file — the lock file of every kubesafe
//! writer — from apply until they are dropped, so nothing else of kubesafe
//! writes the file while a transaction judges and maybe rolls back a change.
//!
//! Both also write `.NAME.kubesafe-transaction` beside it before they write
//! the file, and remove it when dropped. A process killed mid-transaction
//! releases the lock but leaves that marker: the file may hold content no
//! gate judged, so the next change of the file fails with
//! [`ChangeError::Unfinished`], nothing written, until a human has checked
//! the component and deleted the marker (it names the backup of the content
//! from before).

pub(crate) mod file_replace;
mod journal;
#[cfg(feature = "manifest-edit")]
mod manifest;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use file_replace::FileReplace;
#[cfg(feature = "manifest-edit")]
#[cfg_attr(docsrs, doc(cfg(feature = "manifest-edit")))]
pub use manifest::ManifestChange;

use crate::error::ChangeError;
use crate::witness::FlagExpectation;

/// A change to a component's configuration that can be rolled back.
///
/// Contract:
/// * [`plan`](Self::plan) touches nothing.
/// * [`apply`](Self::apply) either applies the whole change or returns an
///   error with nothing changed.
/// * [`rollback`](Self::rollback) restores the configuration from before
///   `apply` and keeps the rejected configuration somewhere the component
///   will not load it (for a static-pod manifest: a hidden file, or outside
///   the manifest directory), reporting where. Restoring comes first: a
///   rejected copy that cannot be written must not keep the original from
///   being put back (report no copy then).
pub trait Change {
    /// Works out what the change will do, without touching anything.
    ///
    /// # Errors
    /// When the change cannot be made (unreadable file, invalid input); the
    /// transaction then fails with nothing changed.
    fn plan(&mut self) -> Result<ChangePlan, ChangeError>;

    /// Applies the change.
    ///
    /// # Errors
    /// With nothing changed.
    fn apply(&mut self) -> Result<AppliedChange, ChangeError>;

    /// Restores the configuration from before [`apply`](Self::apply).
    ///
    /// # Errors
    /// When the old configuration could not be restored; the error says what
    /// state things are in.
    fn rollback(&mut self) -> Result<RolledBackChange, ChangeError>;
}

impl<C: Change + ?Sized> Change for Box<C> {
    fn plan(&mut self) -> Result<ChangePlan, ChangeError> {
        (**self).plan()
    }
    fn apply(&mut self) -> Result<AppliedChange, ChangeError> {
        (**self).apply()
    }
    fn rollback(&mut self) -> Result<RolledBackChange, ChangeError> {
        (**self).rollback()
    }
}

/// What a change will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChangePlan {
    /// One line for humans, e.g. `set --anonymous-auth=false in
    /// /etc/kubernetes/manifests/kube-apiserver.yaml`.
    pub description: String,
    /// The file (or other target) changed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    /// Whether the component will restart because of the change (and of
    /// its rollback).
    pub restart: RestartExpectation,
    /// Flags the restarted process must carry after the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply_flags: Vec<FlagExpectation>,
    /// Flags it must carry after a rollback (the old values; `value: None`
    /// for flags that were absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_flags: Vec<FlagExpectation>,
}

impl ChangePlan {
    /// A plan expecting a restart, with no flag expectations.
    #[must_use]
    pub fn new(description: impl Into<String>, restart: RestartExpectation) -> Self {
        Self {
            description: description.into(),
            target: None,
            restart,
            apply_flags: Vec::new(),
            rollback_flags: Vec::new(),
        }
    }

    /// Sets the target.
    #[must_use]
    pub fn with_target(mut self, target: impl Into<PathBuf>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Sets the flag expectations after the change and after a rollback.
    #[must_use]
    pub fn with_flags(
        mut self,
        apply_flags: Vec<FlagExpectation>,
        rollback_flags: Vec<FlagExpectation>,
    ) -> Self {
        self.apply_flags = apply_flags;
        self.rollback_flags = rollback_flags;
        self
    }
}

/// Whether the component will restart because of a change.
///
/// The kubelet restarts a static pod only when the *decoded* pod changes (its
/// config hash covers the pod object): a comment- or whitespace-only edit
/// never restarts it, so the gate must not wait for a restart that cannot
/// come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartExpectation {
    /// A restart is expected; the gate waits for the witness.
    Expected {
        /// Why, e.g. `the decoded pod changed`.
        reason: String,
    },
    /// No restart can come; the gate skips the witness and records why.
    NotExpected {
        /// Why, e.g. `only comments or formatting changed`.
        reason: String,
    },
}

impl RestartExpectation {
    /// Whether a restart is expected.
    #[must_use]
    pub fn is_expected(&self) -> bool {
        matches!(self, Self::Expected { .. })
    }

    /// The reason.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Expected { reason } | Self::NotExpected { reason } => reason,
        }
    }
}

/// What [`Change::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppliedChange {
    /// Where a copy of the configuration from before the change is kept
    /// (to restore by hand if even the rollback fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
}

impl AppliedChange {
    /// An applied change with its backup location.
    #[must_use]
    pub fn new(backup: Option<PathBuf>) -> Self {
        Self { backup }
    }
}

/// What [`Change::rollback`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RolledBackChange {
    /// Where the rejected configuration is kept for inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_copy: Option<PathBuf>,
}

impl RolledBackChange {
    /// A rollback with the location of the kept broken copy.
    #[must_use]
    pub fn new(broken_copy: Option<PathBuf>) -> Self {
        Self { broken_copy }
    }
}
