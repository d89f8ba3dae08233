//! A sample rollback record (and its digests and people) for tests that need one without
//! running a rollback: rendering snapshots, the store.

use std::time::Duration;

use rollbot::domain::model::{Digest, ImageRef, Tag};
use rollbot::domain::record::RollbackRecord;
use rollbot::domain::record::{PlannedTag, TargetReport};
use rollbot::domain::rollback::{Actor, RollbackId, State, Timestamp};
use rollbot::registry::oci::MediaType;

/// `sha256:cccc…`
pub fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest")
}

pub fn actor(id: &str, name: &str) -> Actor {
    Actor {
        id: id.into(),
        name: name.into(),
        groups: Vec::new(),
    }
}

/// Rollback rb-7 of `image` (alias `app`) in `state`: `latest` and `stable` from
/// `sha256:cccc…` to the index `sha256:bbbb…`, requested by Alice.
pub fn sample(image: &str, state: State) -> RollbackRecord {
    let created = Timestamp(1_795_000_000_000);
    RollbackRecord {
        id: RollbackId(7),
        image: ImageRef::parse(image).expect("image"),
        alias: "app".into(),
        channel: rollbot::domain::rollback::ChannelRef::parse("console:releases").expect("channel"),
        requester: actor("U1ALICE", "Alice"),
        reason: Some("v1.2.3 crashes on start".into()),
        requested_target: "the previous good build".into(),
        target_source: Some(
            "the build before sha256:cccccccccccc per its rollback manifest".into(),
        ),
        target: TargetReport {
            digest: digest('b'),
            media_type: MediaType::OciIndex,
            kind: "OCI image index".into(),
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            references_checked: 2,
        },
        tags: vec![
            PlannedTag {
                tag: Tag::parse("latest").expect("tag"),
                from: digest('c'),
                already_at_target: false,
            },
            PlannedTag {
                tag: Tag::parse("stable").expect("tag"),
                from: digest('c'),
                already_at_target: false,
            },
        ],
        state,
        created_at: created,
        expires_at: created.plus(Duration::from_secs(600)),
        updated_at: created,
        approved_at: None,
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
