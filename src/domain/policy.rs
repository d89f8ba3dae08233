//! The two-person rule as one pure function: who may approve or reject, when a request is
//! approved, and why a vote is refused. It fails closed: no approvers configured means nobody
//! can approve; an expired request cannot be approved.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rollback::{Actor, State, Timestamp};

/// Someone allowed to approve: a user id, or every member of a group (`group:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Approver {
    User(String),
    Group(String),
}

impl Approver {
    /// `group:release-managers` is a group, anything else a user id.
    pub fn parse(text: &str) -> Result<Approver, String> {
        let text = text.trim();
        match text.strip_prefix("group:") {
            Some("") => Err("'group:' needs a group name".to_owned()),
            Some(group) => Ok(Approver::Group(group.to_owned())),
            None if text.is_empty() => Err("an approver cannot be empty".to_owned()),
            None => Ok(Approver::User(text.to_owned())),
        }
    }

    fn matches(&self, actor: &Actor) -> bool {
        match self {
            Approver::User(id) => *id == actor.id,
            Approver::Group(group) => actor.groups.iter().any(|g| g == group),
        }
    }
}

/// The approval rule for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    pub approvers: Vec<Approver>,
    /// Distinct approvals needed (not counting the requester, who can never approve).
    pub required: u32,
    /// How long a request may wait for approval.
    pub expiry: Duration,
}

impl ApprovalRule {
    pub fn may_approve(&self, actor: &Actor) -> bool {
        self.approvers.iter().any(|a| a.matches(actor))
    }

    /// Why no request under this rule could ever be approved (one by `requester`, when given,
    /// who cannot approve their own), as far as that is known without asking a chat platform
    /// who is in a group: nobody configured, or fewer named people than approvals required.
    pub fn unapprovable(&self, requester: Option<&Actor>) -> Option<String> {
        if self.approvers.is_empty() {
            return Some("no approvers are configured, so nobody can approve it".to_owned());
        }
        if self
            .approvers
            .iter()
            .any(|a| matches!(a, Approver::Group(_)))
        {
            // A group may have any number of members.
            return None;
        }
        let mut people: Vec<&str> = self
            .approvers
            .iter()
            .filter_map(|a| match a {
                Approver::User(id) if requester.is_none_or(|r| r.id != *id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        people.sort_unstable();
        people.dedup();
        let could_vote = u32::try_from(people.len()).unwrap_or(u32::MAX);
        (could_vote < self.required).then(|| {
            format!(
                "{} approvals are required but only {could_vote} {} could ever approve{}",
                self.required,
                if could_vote == 1 { "person" } else { "people" },
                if requester.is_some() {
                    " (the requester cannot approve their own request)"
                } else {
                    ""
                }
            )
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// A vote already recorded on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVote {
    pub actor: Actor,
    pub decision: Decision,
    pub at: Timestamp,
    pub reason: Option<String>,
}

/// What the policy needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub state: State,
    pub requester: &'a Actor,
    pub expires_at: Timestamp,
    pub votes: &'a [RecordedVote],
}

/// Why a vote was not counted. Nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotPending(State),
    Expired,
    OwnRequest,
    NotAnApprover,
    AlreadyVoted(Decision),
}

impl Refusal {
    /// What to tell the person who voted.
    pub fn explain(self) -> String {
        match self {
            Refusal::NotPending(state) => {
                format!("it is no longer waiting for approval (it is {state})")
            }
            Refusal::Expired => "the request has expired; ask for a new one".to_owned(),
            Refusal::OwnRequest => {
                "you cannot approve or reject your own request; a second person must".to_owned()
            }
            Refusal::NotAnApprover => "you are not on the approvers list for this image".to_owned(),
            Refusal::AlreadyVoted(Decision::Approve) => "you already approved it".to_owned(),
            Refusal::AlreadyVoted(Decision::Reject) => "you already rejected it".to_owned(),
        }
    }
}

/// The outcome of a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Refused(Refusal),
    /// An approval was counted; more are needed.
    Counted {
        approvals: u32,
        required: u32,
    },
    /// This approval reached the required number.
    Approved,
    /// A reject vetoes the request.
    Rejected,
}

/// Decides one vote by `actor` at `now` on `pending`.
pub fn decide(
    rule: &ApprovalRule,
    pending: Pending<'_>,
    actor: &Actor,
    decision: Decision,
    now: Timestamp,
) -> Verdict {
    if pending.state != State::Requested {
        return Verdict::Refused(Refusal::NotPending(pending.state));
    }
    if now >= pending.expires_at {
        return Verdict::Refused(Refusal::Expired);
    }
    if actor.id == pending.requester.id {
        return Verdict::Refused(Refusal::OwnRequest);
    }
    if !rule.may_approve(actor) {
        return Verdict::Refused(Refusal::NotAnApprover);
    }
    if let Some(earlier) = pending.votes.iter().find(|v| v.actor.id == actor.id) {
        return Verdict::Refused(Refusal::AlreadyVoted(earlier.decision));
    }
    match decision {
        Decision::Reject => Verdict::Rejected,
        Decision::Approve => {
            let approvals = 1 + pending
                .votes
                .iter()
                .filter(|v| v.decision == Decision::Approve && v.actor.id != pending.requester.id)
                .count();
            let approvals = u32::try_from(approvals).unwrap_or(u32::MAX);
            let required = rule.required.max(1);
            if approvals >= required {
                Verdict::Approved
            } else {
                Verdict::Counted {
                    approvals,
                    required,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(id: &str, groups: &[&str]) -> Actor {
        Actor {
            id: id.into(),
            name: id.to_uppercase(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn vote(id: &str, decision: Decision) -> RecordedVote {
        RecordedVote {
            actor: actor(id, &[]),
            decision,
            at: Timestamp(0),
            reason: None,
        }
    }

    #[test]
    fn votes_are_decided_by_one_table() {
        let rule = |required| ApprovalRule {
            approvers: vec![
                Approver::User("alice".into()),
                Approver::User("bob".into()),
                Approver::Group("sre".into()),
            ],
            required,
            expiry: Duration::from_secs(600),
        };
        let requester = actor("alice", &[]);
        let approved = vec![vote("bob", Decision::Approve)];
        let none: Vec<RecordedVote> = Vec::new();
        let carol_sre = actor("carol", &["sre"]);
        let dave = actor("dave", &["dev"]);
        let bob = actor("bob", &[]);
        use Decision::*;
        use Verdict::*;
        type Row<'a> = (
            &'a str,
            u32,
            State,
            i64,
            &'a [RecordedVote],
            &'a Actor,
            Decision,
            Verdict,
        );
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            ("second person approves",        1, State::Requested, 10, &none,     &bob,       Approve, Approved),
            ("group member approves",         1, State::Requested, 10, &none,     &carol_sre, Approve, Approved),
            ("requester cannot approve",      1, State::Requested, 10, &none,     &requester, Approve, Refused(Refusal::OwnRequest)),
            ("requester cannot reject",       1, State::Requested, 10, &none,     &requester, Reject,  Refused(Refusal::OwnRequest)),
            ("non-approver refused",          1, State::Requested, 10, &none,     &dave,      Approve, Refused(Refusal::NotAnApprover)),
            ("non-approver cannot veto",      1, State::Requested, 10, &none,     &dave,      Reject,  Refused(Refusal::NotAnApprover)),
            ("approver rejects: veto",        2, State::Requested, 10, &approved, &carol_sre, Reject,  Rejected),
            ("counts once per identity",      2, State::Requested, 10, &approved, &bob,       Approve, Refused(Refusal::AlreadyVoted(Approve))),
            ("two needed: first counted",     2, State::Requested, 10, &none,     &bob,       Approve, Counted { approvals: 1, required: 2 }),
            ("two needed: second approves",   2, State::Requested, 10, &approved, &carol_sre, Approve, Approved),
            ("expired fails closed",          1, State::Requested, 1000, &none,   &bob,       Approve, Refused(Refusal::Expired)),
            ("at the expiry instant: expired",1, State::Requested, 600, &none,    &bob,       Approve, Refused(Refusal::Expired)),
            ("already running",               1, State::Retagging, 10, &none,     &bob,       Approve, Refused(Refusal::NotPending(State::Retagging))),
            ("already approved (double click)",1, State::Approved, 10, &approved, &bob,       Approve, Refused(Refusal::NotPending(State::Approved))),
        ];
        for (name, required, state, now, votes, who, decision, expected) in table {
            let pending = Pending {
                state,
                requester: &requester,
                expires_at: Timestamp(600),
                votes,
            };
            assert_eq!(
                decide(&rule(required), pending, who, decision, Timestamp(now)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn no_approvers_means_nobody_can_approve() {
        let rule = ApprovalRule {
            approvers: Vec::new(),
            required: 1,
            expiry: Duration::from_secs(600),
        };
        let requester = actor("alice", &[]);
        let pending = Pending {
            state: State::Requested,
            requester: &requester,
            expires_at: Timestamp(600),
            votes: &[],
        };
        assert_eq!(
            decide(
                &rule,
                pending,
                &actor("bob", &["sre"]),
                Decision::Approve,
                Timestamp(1)
            ),
            Verdict::Refused(Refusal::NotAnApprover)
        );
    }

    #[test]
    fn approvers_parse_users_and_groups() {
        assert_eq!(Approver::parse("U123"), Ok(Approver::User("U123".into())));
        assert_eq!(
            Approver::parse("group:sre"),
            Ok(Approver::Group("sre".into()))
        );
        assert!(Approver::parse("group:").is_err());
        assert!(Approver::parse(" ").is_err());
    }

    #[test]
    fn rules_nobody_could_ever_satisfy_are_recognised() {
        let rule = |approvers: &[&str], required: u32| ApprovalRule {
            approvers: approvers
                .iter()
                .map(|a| Approver::parse(a).expect("approver"))
                .collect(),
            required,
            expiry: Duration::from_secs(600),
        };
        let bob = Actor {
            id: "bob".into(),
            name: "Bob".into(),
            groups: Vec::new(),
        };
        for (approvers, required, requester, unapprovable) in [
            (&[][..], 1, None, true),
            (&["bob"][..], 1, None, false),
            (&["bob"][..], 2, None, true),
            (&["bob", "bob"][..], 2, None, true),
            (&["bob", "carol"][..], 2, None, false),
            (&["bob", "carol"][..], 2, Some(&bob), true),
            (&["bob"][..], 1, Some(&bob), true),
            (&["bob", "group:sre"][..], 5, Some(&bob), false),
        ] {
            assert_eq!(
                rule(approvers, required).unapprovable(requester).is_some(),
                unapprovable,
                "{approvers:?} required {required} requested by {requester:?}"
            );
        }
    }
}
