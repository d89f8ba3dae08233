//! The history chain (each rollback manifest names the previous build) and the choice of a
//! default rollback target from it.

use serde::Serialize;

use super::{read_manifest, read_mark, ArtifactError, BadMark, RollbackManifest};
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::registry::oci::RawManifest;
use crate::registry::{missing_references, RegistryClient, RegistryError};

/// One build in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub digest: Digest,
    /// Its rollback manifest; `None` where the chain stops for want of one.
    pub manifest: Option<RollbackManifest>,
    /// Every platform (or blob) of the image is present; `None` when not checked (target
    /// selection does not check the live image, nor builds marked bad).
    pub complete: Option<bool>,
    /// What is missing when not complete.
    pub missing: Vec<String>,
    /// A current bad mark.
    pub bad: Option<BadMark>,
    /// The image manifest read for the completeness check, so a rollback to this build need
    /// not GET it again.
    #[serde(skip)]
    pub image_manifest: Option<RawManifest>,
}

impl HistoryEntry {
    /// Checked complete and not marked bad.
    pub fn is_usable(&self) -> bool {
        self.complete == Some(true) && self.bad.is_none()
    }
}

/// Why the walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HistoryEnd {
    /// The oldest manifest has no previous digest.
    FirstBuild,
    /// No rollback manifest for this digest.
    MissingManifest {
        digest: Digest,
    },
    Limit,
    /// A manifest names a digest already seen.
    Loop {
        digest: Digest,
    },
    /// Reading stopped with an error.
    Error {
        detail: String,
    },
}

impl HistoryEnd {
    pub fn describe(&self) -> String {
        match self {
            HistoryEnd::FirstBuild => "the oldest entry is the first build".to_owned(),
            HistoryEnd::MissingManifest { digest } => {
                format!("no rollback manifest for {digest}; history stops there")
            }
            HistoryEnd::Limit => "limit reached".to_owned(),
            HistoryEnd::Loop { digest } => format!("the chain loops back to {digest}"),
            HistoryEnd::Error { detail } => format!("stopped: {detail}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    pub image: ImageRef,
    /// The digest the walk started from (the live digest of the floating tag).
    pub live: Digest,
    pub entries: Vec<HistoryEntry>,
    pub end: HistoryEnd,
}

/// Reads one build: its rollback manifest, its mark and, with `check` and no bad mark, its
/// completeness.
async fn entry(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    check: bool,
) -> Result<HistoryEntry, ArtifactError> {
    let manifest = read_manifest(registry, image, digest).await?;
    let bad = read_mark(registry, image, digest).await?.filter(|m| m.bad);
    let mut found = HistoryEntry {
        digest: digest.clone(),
        manifest,
        complete: None,
        missing: Vec::new(),
        bad,
        image_manifest: None,
    };
    if !check || found.bad.is_some() {
        return Ok(found);
    }
    match registry
        .get_manifest(&image.repository, &Reference::Digest(digest.clone()))
        .await
    {
        Ok(image_manifest) => {
            let references = image_manifest.references().map_err(|e| {
                ArtifactError::Registry(RegistryError::InvalidResponse {
                    registry: registry.host().clone(),
                    request: format!("GET {digest}"),
                    detail: e.to_string(),
                })
            })?;
            let missing = missing_references(registry, image, &references).await?;
            found.complete = Some(missing.is_empty());
            found.missing = missing
                .iter()
                .map(|r| format!("{} ({})", r.label, r.digest.short()))
                .collect();
            found.image_manifest = Some(image_manifest);
        }
        Err(RegistryError::ManifestUnknown { .. }) => {
            found.complete = Some(false);
            found.missing = vec!["the image manifest itself".to_owned()];
        }
        Err(other) => return Err(other.into()),
    }
    Ok(found)
}

/// Walks the chain from `live` through each manifest's `previous_digest`, reading at most
/// `limit` entries. `stop` ends the walk early after an entry (used by target selection).
/// Completeness is checked for every build not marked bad, the live one only if `check_live`.
///
/// Registry cost per entry: 2 HEADs for the artifacts, a manifest and a blob GET for the
/// rollback manifest (and for a bad mark when one exists), and for the completeness check one
/// manifest GET for the image and a HEAD per platform.
///
/// # Errors
/// None: a failure to read ends the history with `HistoryEnd::Error`, keeping what was read.
pub async fn walk(
    registry: &RegistryClient,
    image: &ImageRef,
    live: &Digest,
    limit: usize,
    check_live: bool,
    mut stop: impl FnMut(&[HistoryEntry]) -> bool,
) -> History {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let mut next = Some(live.clone());
    let end = loop {
        let Some(digest) = next.take() else {
            break HistoryEnd::FirstBuild;
        };
        if entries.len() >= limit {
            break HistoryEnd::Limit;
        }
        if entries.iter().any(|e| e.digest == digest) {
            break HistoryEnd::Loop { digest };
        }
        let check = check_live || !entries.is_empty();
        match entry(registry, image, &digest, check).await {
            Ok(found) => {
                let has_manifest = found.manifest.is_some();
                next = found
                    .manifest
                    .as_ref()
                    .and_then(|m| m.previous_digest.clone());
                entries.push(found);
                if !has_manifest {
                    break HistoryEnd::MissingManifest { digest };
                }
                if stop(&entries) {
                    break HistoryEnd::Limit;
                }
            }
            Err(error) => {
                break HistoryEnd::Error {
                    detail: error.to_string(),
                }
            }
        }
    };
    History {
        image: image.clone(),
        live: live.clone(),
        entries,
        end,
    }
}

/// The outcome of choosing a rollback target from the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The newest earlier build that is complete and not marked bad.
    Chosen {
        digest: Digest,
        /// Its image manifest, already read and checked: the plan reuses it.
        manifest: Option<RawManifest>,
        /// How it was chosen, for people (`the build before sha256:… (latest's live digest) per its
        /// rollback manifest, …`).
        source: String,
    },
    /// No safe automatic choice; `history` shows the options.
    Refused {
        reason: String,
        /// The newest complete, unmarked build further back, to offer with `--to`.
        suggestion: Option<Digest>,
        history: History,
    },
}

/// How a target was chosen, for people: `the build before sha256:… (latest's live digest)
/// per its rollback manifest, built … from <sha>; skipped … marked bad`.
fn describe_choice(
    tag: &Tag,
    live: &Digest,
    chosen: &Digest,
    skipped_bad: &[Digest],
    history: &History,
) -> String {
    let built = history
        .entries
        .iter()
        .find(|e| e.digest == *chosen)
        .and_then(|e| e.manifest.as_ref())
        .map(|m| {
            format!(
                ", built {}{}",
                m.created_at,
                m.git_sha
                    .as_deref()
                    .map(|sha| format!(" from {sha}"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let mut text = format!(
        "the build before {} ({tag}'s live digest) per its rollback manifest{built}",
        live.short()
    );
    if !skipped_bad.is_empty() {
        text.push_str(&format!(
            "; skipped {} marked bad",
            skipped_bad
                .iter()
                .map(|d| d.short().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    text
}

/// Chooses the target for `rollbot rollback IMAGE` (or `/rollback IMAGE`) without a target,
/// from `tag`'s live digest `live`.
///
/// Builds marked bad are skipped (a person decided that). An incomplete build is never skipped
/// silently: the selection is refused, naming what is missing and suggesting the next complete
/// build, so a person chooses.
pub async fn select_target(
    registry: &RegistryClient,
    image: &ImageRef,
    tag: &Tag,
    live: &Digest,
) -> Selection {
    // Stop once an earlier usable build has been read.
    let history = walk(registry, image, live, 50, false, |entries| {
        entries.len() > 1 && entries[1..].iter().any(HistoryEntry::is_usable)
    })
    .await;
    let mut skipped_bad = Vec::new();
    for (index, candidate) in history.entries.iter().enumerate().skip(1) {
        if candidate.bad.is_some() {
            skipped_bad.push(candidate.digest.clone());
            continue;
        }
        if candidate.complete != Some(true) {
            let suggestion = history.entries[index + 1..]
                .iter()
                .find(|e| e.is_usable())
                .map(|e| e.digest.clone());
            return Selection::Refused {
                reason: format!(
                    "the previous build {} is incomplete (missing {}); choose a target with --to",
                    candidate.digest,
                    candidate.missing.join(", ")
                ),
                suggestion,
                history,
            };
        }
        return Selection::Chosen {
            digest: candidate.digest.clone(),
            manifest: candidate.image_manifest.clone(),
            source: describe_choice(tag, live, &candidate.digest, &skipped_bad, &history),
        };
    }
    let reason = match (&history.end, history.entries.first()) {
        (_, Some(first)) if first.manifest.is_none() => format!(
            "{} has no rollback manifest for its live digest {}; pass --to, or push rollback manifests in CI (rollbot manifest push)",
            image, live
        ),
        (HistoryEnd::Error { detail }, _) => format!("could not read the history: {detail}"),
        (end, _) => format!("no earlier usable build ({})", end.describe()),
    };
    Selection::Refused {
        reason,
        suggestion: None,
        history,
    }
}
