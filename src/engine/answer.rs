//! What the engine answers a command with. Each command returns an [`Answer`], a typed result
//! that chat adapters word (`chat::reply`); a refusal is a [`Refusal`], every reason a command is
//! turned down, worded in one place (its `Display`) and written to the audit log with it.

use std::time::Duration;

use crate::domain::command::USAGE;
use crate::domain::model::{Digest, ImageRef, Tag};
use crate::domain::policy::{self, Approver};
use crate::domain::record::RollbackRecord;
use crate::domain::rollback::{RollbackId, State, Timestamp};
use crate::manifest::History;

/// The result of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `/rollback help`.
    Usage,
    /// A redelivery of a command already handled: nothing to tell anyone.
    Duplicate,
    /// Nothing to do and nothing to say (a reaction on a message that is not a rollback's).
    Ignored,
    /// A rollback was planned and waits for approval.
    Requested {
        id: RollbackId,
        alias: String,
        tags: Vec<Tag>,
        target: Digest,
        required: u32,
        approvers: Vec<Approver>,
        expires_at: Timestamp,
        /// A drill: rehearsed on the scratch repository once approved.
        drill: bool,
    },
    /// Every tag already points at the target.
    NothingToDo {
        alias: String,
        target: Digest,
    },
    /// An approval counted; more are needed.
    ApprovalRecorded {
        id: RollbackId,
        approvals: u32,
        required: u32,
    },
    /// The last approval needed: the rollback (or the drill) runs.
    Approved {
        id: RollbackId,
        drill: bool,
    },
    Rejected {
        id: RollbackId,
    },
    Cancelled {
        id: RollbackId,
    },
    /// Rollbacks asked about (all active ones, or one by id), at `now`.
    Status {
        records: Vec<RollbackRecord>,
        now: Timestamp,
    },
    History {
        alias: String,
        tag: Tag,
        history: History,
    },
    HoldReleased {
        alias: String,
        /// What releasing gave up (a rollback the hold recorded as unfinished).
        warning: Option<String>,
    },
    NoActiveHold {
        alias: String,
    },
    Refused(Refusal),
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Answer {
        Answer::Refused(refusal)
    }
}

/// Why a command was turned down. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("rollbot is shutting down; try again in a moment")]
    ShuttingDown,
    #[error("rollbot stopped before answering; try again")]
    NoAnswer,
    #[error("You are sending commands too fast (limit {limit} per minute); try again in {} s.", retry_in.as_secs().max(1))]
    TooFast { limit: u32, retry_in: Duration },
    #[error("The limit of {limit} rollbacks per hour is reached; your approval was not recorded. Try again in {} min.", retry_in.as_secs().div_ceil(60).max(1))]
    RollbacksPerHour { limit: u32, retry_in: Duration },
    #[error("{error}\n{USAGE}")]
    Malformed { error: String },
    #[error("{name} is not on rollbot's allowlist of images{}", known_list(known))]
    NotAllowlisted { name: String, known: Vec<String> },
    #[error("{alias} already has a rollback in progress: {id} ({state}, requested by {requester}); one at a time")]
    InProgress {
        alias: String,
        id: RollbackId,
        state: State,
        requester: String,
    },
    #[error("{alias} already has a drill in progress: {id} ({state}); one drill at a time (a drill never blocks a real rollback)")]
    DrillInProgress {
        alias: String,
        id: RollbackId,
        state: State,
    },
    #[error("{image} already has a {} in progress", if *drill { "drill" } else { "rollback" })]
    InProgressStored { image: String, drill: bool },
    #[error("{alias} already has a {} being planned; one at a time", if *what == "drill" { "drill" } else { "rollback request" })]
    BeingPlanned { alias: String, what: &'static str },
    #[error("a rollback of {alias} requested by you could never be approved: {why}; ask whoever runs rollbot to fix the approvers in its config")]
    Unapprovable { alias: String, why: String },
    #[error("{alias} left the allowlist")]
    LeftAllowlist { alias: String },
    /// A registry client could not be set up (credentials, TLS).
    #[error("{0}")]
    Registry(String),
    #[error("Cannot roll back {alias}: {error}")]
    CannotPlan { alias: String, error: String },
    #[error("Cannot drill {alias}: {error}")]
    CannotDrill { alias: String, error: String },
    #[error("there is no rollback {id}")]
    NoSuchRollback { id: RollbackId },
    #[error("cannot read {id}: {error}")]
    Unreadable { id: RollbackId, error: String },
    #[error("{id} is no longer waiting for approval (it is {state})")]
    NotWaiting { id: RollbackId, state: State },
    #[error("{alias} is no longer on the allowlist; {id} cannot be approved")]
    NoLongerAllowlisted { alias: String, id: RollbackId },
    #[error("You cannot {verb} {id}: {}.", why.explain())]
    Vote {
        verb: &'static str,
        id: RollbackId,
        why: policy::Refusal,
    },
    #[error("{id} is not active")]
    NotActive { id: RollbackId },
    #[error("only {requester} (who requested {id}) can cancel it; approvers can reject it")]
    NotRequester { id: RollbackId, requester: String },
    #[error("{id} is already {state}; it cannot be cancelled")]
    NotCancellable { id: RollbackId, state: State },
    #[error("only approvers of {alias} can release its hold (it lets CI move the tags again)")]
    NotApprover { alias: String },
    #[error("{image} has no tag {tag}")]
    NoTag { image: ImageRef, tag: Tag },
    #[error("{0}")]
    HistoryUnreadable(String),
    #[error("the hold could not be released: {0}")]
    HoldNotReleased(String),
    #[error("cannot read the hold of {alias}: {error}")]
    HoldUnreadable { alias: String, error: String },
    #[error("{what} could not be saved: {error}")]
    NotSaved { what: &'static str, error: String },
}

/// ` (app, web)` after "not on the allowlist", or nothing when the allowlist is empty.
fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" ({})", known.join(", "))
    }
}
