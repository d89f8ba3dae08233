//! What to do with a rollback the previous process left running, decided from where its tags
//! are now: one pure function, table-tested like the two-person rule. The engine reads the tags
//! (after waiting for a write that may have been in flight) and acts on the decision.

use std::time::Duration;

use super::model::{Tag, TagNow};
use super::record::RollbackRecord;
use super::rollback::{State, Timestamp};

/// The decision for an interrupted rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconcile {
    /// Every tag is at the target: verify, check and hold, then finish.
    Verify,
    /// No tag moved and the approval is recent: run the approved rollback again.
    Resume,
    /// End it as interrupted, for a person to look at.
    Interrupted(Interruption),
}

/// Why a rollback cannot simply go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// A tag could not be read.
    Unreadable { tag: Tag, why: String },
    /// It was approved but never started, and the approval is too old to act on: nothing
    /// changed.
    StaleBeforeRetag,
    /// It was retagging, no tag was seen to move, and the approval is too old: a write in
    /// flight when the process stopped may still land.
    StaleDuringRetag,
    /// Some tags moved and some did not (or moved elsewhere).
    Mixed,
}

/// Decides what to do with `record`, found `running` after a restart, whose tags are at
/// `tags_now` (in the order of `record.tags`) at `now`; approvals are good for `expiry`.
pub fn reconcile(
    record: &RollbackRecord,
    tags_now: &[(Tag, TagNow)],
    now: Timestamp,
    expiry: Duration,
) -> Reconcile {
    if let Some((tag, TagNow::Unknown { unknown })) =
        tags_now.iter().find(|(_, now)| now.is_unknown())
    {
        return Reconcile::Interrupted(Interruption::Unreadable {
            tag: tag.clone(),
            why: unknown.clone(),
        });
    }
    let target = &record.target.digest;
    if tags_now.iter().all(|(_, now)| now.is(target)) {
        return Reconcile::Verify;
    }
    let untouched = record.tags.iter().zip(tags_now).all(|(planned, (_, now))| {
        now.is(&planned.from) || (planned.already_at_target && now.is(target))
    });
    let approval_fresh = record
        .approved_at
        .is_some_and(|at| now.since(at) <= u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
    match (untouched, approval_fresh, record.state) {
        (true, true, _) => Reconcile::Resume,
        (true, false, State::Retagging) => Reconcile::Interrupted(Interruption::StaleDuringRetag),
        (true, false, _) => Reconcile::Interrupted(Interruption::StaleBeforeRetag),
        (false, _, _) => Reconcile::Interrupted(Interruption::Mixed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Digest, ImageRef, MediaType};
    use crate::domain::record::{PlannedTag, TargetReport};
    use crate::domain::rollback::{Actor, ChannelRef, Platform, RollbackId};

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest")
    }

    fn tag(name: &str) -> Tag {
        Tag::parse(name).expect("tag")
    }

    /// latest and stable from c to b; stable was already at b when planned in one variant.
    fn record(state: State, approved_at: i64, stable_already: bool) -> RollbackRecord {
        let planned = |name: &str, already: bool| PlannedTag {
            tag: tag(name),
            from: if already { digest('b') } else { digest('c') },
            already_at_target: already,
        };
        RollbackRecord {
            id: RollbackId(1),
            image: ImageRef::parse("registry.example.com/acme/app").expect("image"),
            alias: "app".into(),
            channel: ChannelRef::new(Platform::Console, "releases"),
            requester: Actor {
                id: "alice".into(),
                name: "Alice".into(),
                groups: Vec::new(),
            },
            reason: None,
            requested_target: "v2".into(),
            target_source: None,
            target: TargetReport {
                digest: digest('b'),
                media_type: MediaType::OciIndex,
                kind: "OCI image index".into(),
                platforms: Vec::new(),
                references_checked: 2,
            },
            tags: vec![planned("latest", false), planned("stable", stable_already)],
            state,
            created_at: Timestamp(0),
            expires_at: Timestamp(600_000),
            updated_at: Timestamp(approved_at),
            approved_at: Some(Timestamp(approved_at)),
            finished_at: None,
            votes: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            tags_now: Vec::new(),
            error: None,
            status_ref: None,
            drill: false,
        }
    }

    #[test]
    fn restart_decisions_follow_the_tags_the_approval_and_the_state() {
        let at = |l: char, s: char| {
            vec![
                (tag("latest"), TagNow::At(digest(l))),
                (tag("stable"), TagNow::At(digest(s))),
            ]
        };
        let expiry = Duration::from_secs(600);
        let fresh = Timestamp(1_000);
        let stale = Timestamp(1_000 + 601_000);
        use Interruption::*;
        use State::{Approved, Retagging, Verifying};
        for (state, stable_already, tags, now, expected) in [
            (Retagging, false, at('b', 'b'), fresh, Reconcile::Verify),
            (Verifying, false, at('b', 'b'), stale, Reconcile::Verify),
            (Approved, false, at('c', 'c'), fresh, Reconcile::Resume),
            (Retagging, false, at('c', 'c'), fresh, Reconcile::Resume),
            (Retagging, true, at('c', 'b'), fresh, Reconcile::Resume),
            (
                Approved,
                false,
                at('c', 'c'),
                stale,
                Reconcile::Interrupted(StaleBeforeRetag),
            ),
            (
                Retagging,
                false,
                at('c', 'c'),
                stale,
                Reconcile::Interrupted(StaleDuringRetag),
            ),
            (
                Retagging,
                false,
                at('b', 'c'),
                fresh,
                Reconcile::Interrupted(Mixed),
            ),
            (
                Retagging,
                false,
                at('a', 'c'),
                fresh,
                Reconcile::Interrupted(Mixed),
            ),
        ] {
            let record = record(state, 1_000, stable_already);
            assert_eq!(
                reconcile(&record, &tags, now, expiry),
                expected,
                "{state:?}, stable already {stable_already}, tags {tags:?}, now {now:?}"
            );
        }
        let unreadable = vec![
            (tag("latest"), TagNow::At(digest('b'))),
            (
                tag("stable"),
                TagNow::Unknown {
                    unknown: "timeout".into(),
                },
            ),
        ];
        assert_eq!(
            reconcile(&record(Retagging, 1_000, false), &unreadable, fresh, expiry),
            Reconcile::Interrupted(Unreadable {
                tag: tag("stable"),
                why: "timeout".into()
            })
        );
    }
}
