//! The hold: "the floating tags were rolled back on purpose; CI must not move them", stored under
//! `rollbot-hold` next to the image and checked by `rollbot gate` in CI.

use serde::{Deserialize, Serialize};

use super::{fetch, now_rfc3339, store, ArtifactError, HOLD_TAG, HOLD_TYPE, SCHEMA_VERSION};
use crate::domain::model::{Digest, ImageRef, Tag};
use crate::registry::RegistryClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Active,
    Released,
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
}

impl Hold {
    pub fn is_active(&self) -> bool {
        self.state == HoldState::Active
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
        }
    }

    /// This hold, released by `by` at `at` (RFC 3339): what `write_hold` stores to let CI push
    /// again.
    pub fn released(self, by: String, at: String, reason: Option<String>) -> Hold {
        Hold {
            state: HoldState::Released,
            released_by: Some(by),
            released_at: Some(at),
            release_reason: reason,
            ..self
        }
    }

    /// One line for people: who held what, when and why.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {} at {} (tags {}) by {} since {}: {}",
            self.image,
            if self.is_active() {
                "is held"
            } else {
                "was held"
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

/// Writes `hold` (active or released) under `rollbot-hold`.
///
/// # Errors
/// Registry errors.
pub async fn write_hold(registry: &RegistryClient, hold: &Hold) -> Result<(), ArtifactError> {
    let document = serde_json::to_vec_pretty(hold).unwrap_or_default();
    let at = hold.released_at.as_deref().unwrap_or(&hold.held_at);
    store(
        registry,
        &hold.image,
        &hold_tag(),
        HOLD_TYPE,
        &document,
        at,
        true,
    )
    .await?;
    Ok(())
}

fn hold_tag() -> Tag {
    Tag::parse(HOLD_TAG).unwrap_or_else(|_| unreachable!("rollbot-hold is a valid tag"))
}
