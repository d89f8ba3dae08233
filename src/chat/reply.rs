//! The words a person gets back for a command: every engine [`Answer`] as text, in one place.
//! Refusals are worded by [`Refusal`]'s own `Display`.

use crate::domain::command::USAGE;
use crate::domain::policy::{Approver, Decision};
use crate::domain::record::RollbackRecord;
use crate::domain::rollback::{State, Timestamp};
use crate::engine::{Answer, Refusal};

/// The answer to the person who sent a command (shown only to them where the platform can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// False when the command was refused or failed.
    pub ok: bool,
    /// A redelivery that was ignored: nothing to tell anyone.
    pub silent: bool,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: true,
            silent: false,
        }
    }

    /// A refusal that did not come from the engine (an unknown button, say).
    pub fn refused(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: false,
            silent: false,
        }
    }
}

impl From<&Refusal> for Reply {
    fn from(refusal: &Refusal) -> Reply {
        Reply::refused(refusal.to_string())
    }
}

/// What to tell the person who sent the command that got `answer`.
pub fn reply(answer: &Answer) -> Reply {
    match answer {
        Answer::Usage => Reply::ok(USAGE),
        Answer::Duplicate => Reply {
            text: "(duplicate delivery ignored)".to_owned(),
            ok: true,
            silent: true,
        },
        Answer::Ignored => Reply {
            text: String::new(),
            ok: true,
            silent: true,
        },
        Answer::Requested {
            id,
            alias,
            tags,
            target,
            required,
            approvers,
            expires_at,
            drill,
        } => Reply::ok(format!(
            "{}{id} requested: {} {alias} ({}) to {}{}. Waiting for {required} approval{} from {}; expires at {}.",
            if *drill { "DRILL " } else { "" },
            if *drill { "rehearse the rollback of" } else { "roll back" },
            tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
            target.short(),
            if *drill {
                " on its scratch repository (production is only read)"
            } else {
                ""
            },
            if *required == 1 { "" } else { "s" },
            describe_approvers(approvers),
            expires_at.rfc3339()
        )),
        Answer::NothingToDo { alias, target } => Reply::ok(format!(
            "{alias}: every tag already points at {}; nothing to do.",
            target.short()
        )),
        Answer::ApprovalRecorded {
            id,
            approvals,
            required,
        } => Reply::ok(format!(
            "Approval recorded for {id} ({approvals} of {required})."
        )),
        Answer::Approved { id, drill: false } => {
            Reply::ok(format!("{id} approved; rolling back now."))
        }
        Answer::Approved { id, drill: true } => Reply::ok(format!(
            "DRILL {id} approved; rehearsing on the scratch repository now."
        )),
        Answer::Rejected { id } => Reply::ok(format!("{id} rejected; nothing will change.")),
        Answer::Cancelled { id } => Reply::ok(format!("{id} cancelled.")),
        Answer::Status { records, .. } if records.is_empty() => {
            Reply::ok("No rollback is in progress.")
        }
        Answer::Status { records, now } => Reply::ok(
            records
                .iter()
                .map(|r| describe(r, *now))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Answer::History {
            alias,
            tag,
            history,
        } => Reply::ok(format!(
            "History of {alias} from {tag}:\n{}",
            crate::report::history(history)
        )),
        Answer::HoldReleased { alias, warning } => Reply::ok(format!(
            "Hold on {alias} released; CI may move its tags again.{}",
            warning
                .as_ref()
                .map(|w| format!(" Note: {w}."))
                .unwrap_or_default()
        )),
        Answer::NoActiveHold { alias } => {
            Reply::ok(format!("{alias} has no active hold; nothing to release."))
        }
        Answer::Refused(refusal) => Reply::from(refusal),
    }
}

/// `alice, group:sre`
fn describe_approvers(approvers: &[Approver]) -> String {
    if approvers.is_empty() {
        return "nobody (no approvers are configured)".to_owned();
    }
    approvers
        .iter()
        .map(|a| match a {
            Approver::User(id) => id.clone(),
            Approver::Group(group) => format!("group:{group}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line about a rollback for `/rollback status`.
pub fn describe(record: &RollbackRecord, now: Timestamp) -> String {
    let tags = record
        .tags
        .iter()
        .map(|t| t.tag.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!(
        "{}{} {} ({tags}) → {}: {}, requested by {}",
        if record.drill { "DRILL " } else { "" },
        record.id,
        record.alias,
        record.target.digest.short(),
        record.state,
        record.requester.name
    );
    match record.state {
        State::Requested => {
            let approvals = record
                .votes
                .iter()
                .filter(|v| v.decision == Decision::Approve)
                .count();
            let left = record.expires_at.0.saturating_sub(now.0).max(0) / 1000;
            line.push_str(&format!(
                ", {approvals} approval(s), expires in {} min {} s",
                left / 60,
                left % 60
            ));
        }
        _ => {
            if let Some(error) = &record.error {
                line.push_str(&format!(": {error}"));
            }
        }
    }
    line
}
