//! The hold: "the floating tags were rolled back on purpose; CI must not move them", stored under
//! `rollbot-hold` next to the image and checked by `rollbot gate` in CI.
//!
//! A rollback that holds writes it twice: `in_progress` before its first tag write (naming the
//! target and where every tag was), so that a run that stops part-way — a failed write, kill -9
//! — leaves its intent for the next run, the daemon and other operators to see; then `active`
//! with the report of what was planned and moved, written once the tags moved, while the run
//! verifies (it reports success only after). Either blocks CI's `rollbot gate`.
//!
//! A hold carries its document in its manifest (see the module above), so writing it is one
//! manifest PUT under `rollbot-hold` ([`write_hold`]; the first hold in a repository also
//! uploads the empty blob the manifest names).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    fetch, inline_artifact_manifest, now_rfc3339, ArtifactError, EMPTY_CONFIG, HOLD_TAG, HOLD_TYPE,
    MAX_DOCUMENT_BYTES, SCHEMA_VERSION,
};
use crate::domain::model::{Digest, ImageRef, Tag};
use crate::registry::{RegistryClient, RegistryError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Active,
    Released,
    /// Written before a rollback's first tag write: not every tag may have moved yet.
    InProgress,
}

/// Where a tag pointed before the rollback that set the hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldFrom {
    pub tag: Tag,
    pub digest: Digest,
}

/// What a hold says about a rollback whose target was not named (see [`Hold::reading`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReading {
    /// Nothing: choose from the history.
    Nothing,
    /// Every tag is at the hold's target: that rollback's tags all moved.
    Done,
    /// Some tags are at the hold's target and the others still where that rollback found them:
    /// it stopped part-way, and finishing it is the only safe default.
    Unfinished,
}

/// A hold: "the floating tags were rolled back on purpose; CI must not move them".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub schema_version: u32,
    pub image: ImageRef,
    pub state: HoldState,
    /// The digest the tags were held at.
    pub digest: Digest,
    pub tags: Vec<Tag>,
    pub reason: String,
    pub held_by: String,
    pub held_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
    pub release_reason: Option<String>,
    /// The report of the rollback that set the hold, when a rollback set it.
    pub report: Option<serde_json::Value>,
    /// Where each tag pointed before the rollback (absent in holds set by hand or by older
    /// versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<HeldFrom>,
}

impl Hold {
    /// The hold stops CI: active, or a rollback in progress.
    pub fn is_active(&self) -> bool {
        self.state != HoldState::Released
    }

    /// The hold a rollback writes before its first tag write: the rollback of `tags` (each now
    /// at its `from` digest) to `digest`, started now by `by`.
    pub fn in_progress(
        image: ImageRef,
        digest: Digest,
        from: Vec<HeldFrom>,
        reason: String,
        by: String,
    ) -> Hold {
        Hold {
            state: HoldState::InProgress,
            tags: from.iter().map(|f| f.tag.clone()).collect(),
            from,
            ..Hold::active(image, digest, Vec::new(), reason, by)
        }
    }

    /// An active hold on `image`'s `tags` at `digest`, set now by `by`.
    pub fn active(
        image: ImageRef,
        digest: Digest,
        tags: Vec<Tag>,
        reason: String,
        by: String,
    ) -> Hold {
        Hold {
            schema_version: SCHEMA_VERSION,
            image,
            state: HoldState::Active,
            digest,
            tags,
            reason,
            held_by: by,
            held_at: now_rfc3339(),
            released_by: None,
            released_at: None,
            release_reason: None,
            report: None,
            from: Vec::new(),
        }
    }

    /// What this hold says about a rollback of tags, each at its `live` digest, whose target
    /// nobody named. Only holds a rollback wrote (they record where the tags were) count; a hold
    /// set by hand is a freeze, not a record of a rollback.
    pub fn reading(&self, live: &[(Tag, Digest)]) -> HoldReading {
        let from = self.from_digests();
        if !self.is_active() || from.is_empty() || live.is_empty() {
            return HoldReading::Nothing;
        }
        if live.iter().all(|(_, digest)| *digest == self.digest) {
            return HoldReading::Done;
        }
        let untouched_or_moved = live.iter().all(|(tag, digest)| {
            *digest == self.digest || from.iter().any(|f| f.tag == *tag && f.digest == *digest)
        });
        if untouched_or_moved {
            HoldReading::Unfinished
        } else {
            // The tags moved on since (CI or a person): the hold no longer describes them.
            HoldReading::Nothing
        }
    }

    /// Where the tags were before the rollback that set the hold: `from`, or, in a hold an
    /// older rollbot wrote when its rollback finished, the `from` of each tag in its report.
    /// Empty for a hold set by hand.
    pub fn from_digests(&self) -> Vec<HeldFrom> {
        if !self.from.is_empty() {
            return self.from.clone();
        }
        let Some(tags) = self.report.as_ref().and_then(|r| r["tags"].as_array()) else {
            return Vec::new();
        };
        tags.iter()
            .filter_map(|t| {
                Some(HeldFrom {
                    tag: Tag::parse(t["tag"].as_str()?).ok()?,
                    digest: Digest::parse(t["from"].as_str()?).ok()?,
                })
            })
            .collect()
    }

    /// This hold, released by `by` at `at` (RFC 3339): what `write_hold` stores to let CI push
    /// again. It keeps no `from`, which only an unreleased hold needs (and which a `rollbot gate`
    /// older than that field could not read).
    pub fn released(self, by: String, at: String, reason: Option<String>) -> Hold {
        Hold {
            state: HoldState::Released,
            released_by: Some(by),
            released_at: Some(at),
            release_reason: reason,
            from: Vec::new(),
            ..self
        }
    }

    /// What releasing this hold gives up, when it records a rollback that had not finished.
    pub fn release_warning(&self) -> Option<String> {
        (self.state == HoldState::InProgress).then(|| {
            format!(
                "it recorded a rollback to {} that had not finished; with it released, a rollback without a named target refuses to guess while the floating tags disagree",
                self.digest.short()
            )
        })
    }

    /// One line for people: who held what, when and why.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {} at {} (tags {}) by {} since {}: {}",
            self.image,
            match self.state {
                HoldState::Active => "is held",
                HoldState::InProgress =>
                    "is held for a rollback in progress (not every tag may have moved yet)",
                HoldState::Released => "was held",
            },
            self.digest.short(),
            self.tags
                .iter()
                .map(Tag::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            self.held_by,
            self.held_at,
            self.reason
        );
        if !self.is_active() {
            text = format!(
                "{text}; released by {} at {}{}",
                self.released_by.as_deref().unwrap_or("unknown"),
                self.released_at.as_deref().unwrap_or("unknown"),
                self.release_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        text
    }
}

/// The hold on `image`, if one was ever written.
///
/// # Errors
/// Registry errors; foreign or malformed content under `rollbot-hold`.
pub async fn read_hold(
    registry: &RegistryClient,
    image: &ImageRef,
) -> Result<Option<Hold>, ArtifactError> {
    let tag = hold_tag();
    let Some(bytes) = fetch(registry, image, &tag, HOLD_TYPE, "hold").await? else {
        return Ok(None);
    };
    let hold: Hold = serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Malformed {
        source_name: format!("{image}:{tag}"),
        what: "hold",
        detail: e.to_string(),
    })?;
    Ok(Some(hold))
}

/// Writes `hold` (active, in progress or released) under `rollbot-hold`: one manifest PUT,
/// the one request that changes what the hold says. Nothing is read first: the document is new
/// (it carries its own time), and the hold is replaced whatever it was. A document over 1 MiB
/// (a rollback report with very long check output) is written without its report.
///
/// The manifest names the empty blob `{}`, which every repository rollbot wrote an artifact to
/// has. Where the registry refuses the PUT for that blob (400 or 404 with the code
/// `MANIFEST_BLOB_UNKNOWN` or `BLOB_UNKNOWN`), the blob is uploaded and the PUT sent once
/// more: a refused PUT wrote nothing. If the upload fails, the PUT's refusal is the answer
/// (nothing was written).
///
/// # Errors
/// Registry errors (among them a write that may have landed although it failed).
pub async fn write_hold(registry: &RegistryClient, hold: &Hold) -> Result<(), ArtifactError> {
    let mut document = serde_json::to_string(hold).unwrap_or_default();
    if document.len() > MAX_DOCUMENT_BYTES {
        let slim = Hold {
            report: None,
            ..hold.clone()
        };
        document = serde_json::to_string(&slim).unwrap_or_default();
    }
    let at = hold.released_at.as_deref().unwrap_or(&hold.held_at);
    let manifest = inline_artifact_manifest(HOLD_TYPE, &document, at);
    let repository = &hold.image.repository;
    match registry
        .put_manifest(repository, &hold_tag(), &manifest)
        .await
    {
        Err(
            refused @ RegistryError::Status {
                status: 400 | 404, ..
            },
        ) if refused_for_a_blob(&refused) => {
            if let Err(error) = put_hold_blob(registry, &hold.image).await {
                tracing::warn!(image = %hold.image, %error, "Could not upload the empty blob a hold names.");
                return Err(refused.into());
            }
            registry
                .put_manifest(repository, &hold_tag(), &manifest)
                .await?;
            Ok(())
        }
        other => Ok(other?),
    }
}

/// A manifest PUT refused because a blob it names is not in the repository.
fn refused_for_a_blob(error: &RegistryError) -> bool {
    matches!(error, RegistryError::Status { detail, .. } if detail.contains("BLOB_UNKNOWN"))
}

/// Uploads the empty blob a hold's manifest names into `image`'s repository (POST and PUT): a
/// blob nobody sees until a manifest names it.
///
/// # Errors
/// Registry errors.
async fn put_hold_blob(registry: &RegistryClient, image: &ImageRef) -> Result<(), ArtifactError> {
    let upload = registry.start_upload(&image.repository).await?;
    registry
        .finish_upload(&upload, Bytes::from_static(EMPTY_CONFIG))
        .await?;
    Ok(())
}

/// The tag the hold lives under.
pub fn hold_tag() -> Tag {
    Tag::parse(HOLD_TAG).unwrap_or_else(|_| unreachable!("rollbot-hold is a valid tag"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest")
    }

    fn tag(name: &str) -> Tag {
        Tag::parse(name).expect("tag")
    }

    #[test]
    fn a_hold_tells_an_unfinished_rollback_from_a_finished_one_and_from_a_freeze() {
        let image = ImageRef::parse("registry.example.com/acme/app").expect("image");
        // A rollback of latest and stable from 3 (c) to 2 (b).
        let from = vec![
            HeldFrom {
                tag: tag("latest"),
                digest: digest('c'),
            },
            HeldFrom {
                tag: tag("stable"),
                digest: digest('c'),
            },
        ];
        let in_progress = Hold::in_progress(
            image.clone(),
            digest('b'),
            from.clone(),
            "v3 crashes".into(),
            "alice".into(),
        );
        let active = Hold {
            state: HoldState::Active,
            ..in_progress.clone()
        };
        let released = in_progress
            .clone()
            .released("bob".into(), "now".into(), None);
        let freeze = Hold::active(
            image,
            digest('c'),
            vec![tag("latest")],
            "freeze".into(),
            "carol".into(),
        );
        let live = |l: char, s: char| vec![(tag("latest"), digest(l)), (tag("stable"), digest(s))];
        for (hold, now, expected) in [
            (&in_progress, live('b', 'c'), HoldReading::Unfinished),
            (&in_progress, live('c', 'c'), HoldReading::Unfinished),
            (&active, live('b', 'c'), HoldReading::Unfinished),
            (&in_progress, live('b', 'b'), HoldReading::Done),
            (&active, live('b', 'b'), HoldReading::Done),
            // Moved on since (CI pushed d, or someone moved a tag elsewhere).
            (&active, live('d', 'd'), HoldReading::Nothing),
            (&in_progress, live('b', 'a'), HoldReading::Nothing),
            (&released, live('b', 'c'), HoldReading::Nothing),
            (&freeze, live('c', 'c'), HoldReading::Nothing),
        ] {
            assert_eq!(
                hold.reading(&now),
                expected,
                "{:?} with {now:?}",
                hold.state
            );
        }
        assert!(in_progress.is_active() && active.is_active() && !released.is_active());
        assert!(released.from.is_empty(), "a released hold keeps no from");

        // A hold an older rollbot wrote when its rollback finished: no `from`, but a report.
        let older = Hold {
            from: Vec::new(),
            report: Some(serde_json::json!({ "tags": [
                { "tag": "latest", "from": digest('c').to_string() },
                { "tag": "stable", "from": digest('c').to_string() },
            ]})),
            ..active.clone()
        };
        assert_eq!(older.reading(&live('b', 'b')), HoldReading::Done);
        assert_eq!(older.reading(&live('b', 'c')), HoldReading::Unfinished);
        assert!(in_progress
            .describe()
            .contains("rollback in progress (not every tag may have moved yet)"));
    }
}
