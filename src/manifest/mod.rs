//! Rollback manifests, the history chain, bad-digest marks and the hold: small OCI artifacts
//! stored in the image's own repository, so CI and rollbot need no storage but the registry.
//!
//! | what | tag | artifactType |
//! |---|---|---|
//! | rollback manifest of image digest `D` | `sha256-<hex of D>.rollback` | `application/vnd.rollbot.rollback-manifest.v1+json` |
//! | "`D` is bad" mark | `sha256-<hex of D>.bad` | `application/vnd.rollbot.bad-digest.v1+json` |
//! | hold on the image | `rollbot-hold` | `application/vnd.rollbot.hold.v1+json` |
//!
//! Each artifact is an OCI image manifest with the empty config (`{}`) and one layer: the JSON
//! document, stored byte for byte. The hold, written twice by every rollback, keeps its
//! document in the manifest itself instead (the annotation `vnd.rollbot.document`, its one layer
//! the empty blob), so writing it is one manifest PUT; holds stored the older way are still
//! read. Manifests are built deterministically from the document, so pushing the same document
//! twice writes the same digest. Every rollback manifest names the previous build's digest, so
//! the history is a chain walked from the live digest.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::registry::oci::{MediaType, RawManifest};
use crate::registry::{RegistryClient, RegistryError};

mod history;
mod hold;

pub use history::{select_target, walk, History, HistoryEnd, HistoryEntry, Selection};
pub use hold::{hold_tag, read_hold, write_hold, HeldFrom, Hold, HoldReading, HoldState};

pub const ROLLBACK_MANIFEST_TYPE: &str = "application/vnd.rollbot.rollback-manifest.v1+json";
pub const BAD_MARK_TYPE: &str = "application/vnd.rollbot.bad-digest.v1+json";
pub const HOLD_TYPE: &str = "application/vnd.rollbot.hold.v1+json";
/// The tag the hold lives under.
pub const HOLD_TAG: &str = "rollbot-hold";
const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config every artifact names (its blob must be in the repository).
const EMPTY_CONFIG: &[u8] = b"{}";
/// The annotation that carries a document stored in its manifest (the hold).
const DOCUMENT_ANNOTATION: &str = "vnd.rollbot.document";
/// The JSON documents are small; anything larger under one of these tags is not ours.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The only schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why an artifact could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{image}:{tag} is not a rollbot {what}: {detail}")]
    Foreign {
        image: ImageRef,
        tag: Tag,
        what: &'static str,
        detail: String,
    },
    #[error("{source_name} is not a valid {what}: {detail}")]
    Malformed {
        source_name: String,
        what: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Conflict(String),
}

/// The rollback manifest CI writes for every build. Field names are the documented format
/// (`config/rollback-manifest.schema.json`); unknown fields are refused so that a typo or a
/// foreign document is caught, not half-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackManifest {
    pub schema_version: u32,
    /// `host/repository` of the image.
    pub image: ImageRef,
    /// The digest this build pushed.
    pub current_digest: Digest,
    /// Every tag this build pushed (floating and versioned).
    pub current_tags: Vec<Tag>,
    /// The digest the floating tag pointed at before this build: the rollback target.
    pub previous_digest: Option<Digest>,
    /// `rollbot rollback … --to <previous_digest>`, or null for a first build.
    pub rollback_command: Option<String>,
    /// The same rollback with a standard tool that preserves digests (skopeo), for when
    /// rollbot is not at hand. Never `docker pull/tag/push`.
    pub manual_command: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub build_url: Option<String>,
    pub git_sha: Option<String>,
}

impl RollbackManifest {
    /// Parses and checks a document (from a file or the registry).
    ///
    /// # Errors
    /// Not JSON, unknown or missing fields, another schema version, a bad timestamp.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<RollbackManifest, ArtifactError> {
        let malformed = |detail: String| ArtifactError::Malformed {
            source_name: source_name.to_owned(),
            what: "rollback manifest",
            detail,
        };
        let manifest: RollbackManifest =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if manifest.schema_version != SCHEMA_VERSION {
            return Err(malformed(format!(
                "schema_version {} is not supported (this rollbot reads {SCHEMA_VERSION})",
                manifest.schema_version
            )));
        }
        check_timestamp(&manifest.created_at).map_err(malformed)?;
        if manifest.previous_digest.as_ref() == Some(&manifest.current_digest) {
            return Err(malformed(
                "previous_digest equals current_digest; the chain would loop".to_owned(),
            ));
        }
        Ok(manifest)
    }
}

/// "This digest is bad", or a cleared mark (registries like Docker Hub do not allow deletes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadMark {
    pub schema_version: u32,
    pub image: ImageRef,
    pub digest: Digest,
    pub bad: bool,
    pub reason: String,
    pub marked_by: String,
    pub marked_at: String,
}

/// The current time as RFC 3339 UTC, seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn check_timestamp(text: &str) -> Result<(), String> {
    humantime::parse_rfc3339_weak(text)
        .map(|_| ())
        .map_err(|e| format!("created_at '{text}' is not an RFC 3339 time ({e})"))
}

/// Who is acting, for records written from the CLI: `--by`, else the CI or login user.
pub fn actor(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("GITHUB_ACTOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

// ---- artifacts in the registry ----------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'a str,
    config: Descriptor<'a>,
    layers: [Descriptor<'a>; 1],
    annotations: std::collections::BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'static str>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    Written,
    /// The same document was already there; nothing written.
    AlreadyStored,
    /// Another document was there and was replaced (only when asked to).
    Replaced,
}

/// The empty descriptor (`{}`, embedded as well): every artifact's config, and the one layer of
/// an artifact whose document is in its manifest.
fn empty_descriptor<'a>() -> Descriptor<'a> {
    Descriptor {
        media_type: EMPTY_CONFIG_TYPE,
        digest: Digest::of(EMPTY_CONFIG).to_string(),
        size: EMPTY_CONFIG.len(),
        data: Some("e30="),
    }
}

/// The artifact manifest for `document` (its one layer): deterministic for the same inputs.
fn artifact_manifest(artifact_type: &str, document: &[u8], created_at: &str) -> RawManifest {
    let layer = Descriptor {
        media_type: artifact_type,
        digest: Digest::of(document).to_string(),
        size: document.len(),
        data: None,
    };
    build_artifact(artifact_type, layer, created_at, None)
}

/// The artifact manifest carrying `document` itself (in an annotation; its one layer is the
/// empty blob, like its config): writing it needs no upload but that blob's, once per
/// repository. Deterministic for the same inputs.
fn inline_artifact_manifest(artifact_type: &str, document: &str, created_at: &str) -> RawManifest {
    build_artifact(
        artifact_type,
        empty_descriptor(),
        created_at,
        Some(document.to_owned()),
    )
}

fn build_artifact(
    artifact_type: &str,
    layer: Descriptor<'_>,
    created_at: &str,
    document: Option<String>,
) -> RawManifest {
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("org.opencontainers.image.created", created_at.to_owned());
    if let Some(document) = document {
        annotations.insert(DOCUMENT_ANNOTATION, document);
    }
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: MediaType::OciManifest.as_str(),
        artifact_type,
        config: empty_descriptor(),
        layers: [layer],
        annotations,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    RawManifest {
        digest: Digest::of(&bytes),
        bytes: Bytes::from(bytes),
        media_type: MediaType::OciManifest,
    }
}

/// Stores `document` under `tag` as an artifact of `artifact_type`.
///
/// With `replace == false` a different document already under the tag is a conflict and
/// nothing is written.
///
/// # Errors
/// Registry errors; `Conflict` as above.
async fn store(
    registry: &RegistryClient,
    image: &ImageRef,
    tag: &Tag,
    artifact_type: &str,
    document: &[u8],
    created_at: &str,
    replace: bool,
) -> Result<Stored, ArtifactError> {
    let repository = &image.repository;
    let manifest = artifact_manifest(artifact_type, document, created_at);
    // The tag check and both blob uploads are independent; the manifest PUT needs the blobs.
    let (existing, config, layer) = futures_util::future::join3(
        registry.head_manifest(repository, &Reference::Tag(tag.clone())),
        registry.push_blob(repository, Bytes::from_static(EMPTY_CONFIG)),
        registry.push_blob(repository, Bytes::copy_from_slice(document)),
    )
    .await;
    let outcome = match existing? {
        Some(head) if head.digest == manifest.digest => return Ok(Stored::AlreadyStored),
        Some(head) if !replace => {
            return Err(ArtifactError::Conflict(format!(
                "{image}:{tag} already holds another document ({}); nothing written",
                head.digest.short()
            )))
        }
        Some(_) => Stored::Replaced,
        None => Stored::Written,
    };
    config?;
    layer?;
    registry.put_manifest(repository, tag, &manifest).await?;
    Ok(outcome)
}

/// Reads the document under `tag`, or `None` when the tag does not exist.
///
/// Registry cost: a HEAD; when the tag exists, one manifest GET and, unless the document is in
/// the manifest, one blob GET.
///
/// # Errors
/// Registry errors; `Foreign` when the tag holds something that is not a rollbot artifact of
/// `artifact_type`.
async fn fetch(
    registry: &RegistryClient,
    image: &ImageRef,
    tag: &Tag,
    artifact_type: &str,
    what: &'static str,
) -> Result<Option<Bytes>, ArtifactError> {
    let repository = &image.repository;
    let Some(head) = registry
        .head_manifest(repository, &Reference::Tag(tag.clone()))
        .await?
    else {
        return Ok(None);
    };
    let foreign = |detail: String| ArtifactError::Foreign {
        image: image.clone(),
        tag: tag.clone(),
        what,
        detail,
    };
    let manifest = match registry
        .get_manifest(repository, &Reference::Digest(head.digest))
        .await
    {
        Ok(manifest) => manifest,
        // An unsupported media type or non-JSON bytes under our tag: someone else's content.
        Err(RegistryError::InvalidResponse { detail, .. }) => return Err(foreign(detail)),
        Err(other) => return Err(other.into()),
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        artifact_type: Option<String>,
        #[serde(default)]
        layers: Vec<Layer>,
        #[serde(default)]
        annotations: Option<std::collections::BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layer {
        media_type: Option<String>,
        digest: String,
        size: Option<u64>,
    }
    let shape: Shape = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| foreign(format!("unreadable manifest: {e}")))?;
    if manifest.media_type != MediaType::OciManifest
        || shape.artifact_type.as_deref() != Some(artifact_type)
    {
        return Err(foreign(format!(
            "it holds a {} with artifactType {}",
            manifest.media_type.describe(),
            shape.artifact_type.as_deref().unwrap_or("(none)")
        )));
    }
    let [layer] = shape.layers.as_slice() else {
        return Err(foreign(format!(
            "expected one layer, found {}",
            shape.layers.len()
        )));
    };
    let inline = shape
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(DOCUMENT_ANNOTATION))
        .filter(|_| artifact_type == HOLD_TYPE);
    if let Some(document) = inline {
        // The document is in the manifest; its one layer must then be the empty blob.
        if layer.media_type.as_deref() != Some(EMPTY_CONFIG_TYPE)
            || layer.digest != Digest::of(EMPTY_CONFIG).to_string()
            || layer.size != Some(EMPTY_CONFIG.len() as u64)
        {
            return Err(foreign(
                "it carries its document in the manifest but its layer is not the empty blob"
                    .to_owned(),
            ));
        }
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(foreign("its document is larger than 1 MiB".to_owned()));
        }
        return Ok(Some(Bytes::copy_from_slice(document.as_bytes())));
    }
    if layer.media_type.as_deref() != Some(artifact_type) {
        return Err(foreign(format!(
            "its layer has media type {}",
            layer.media_type.as_deref().unwrap_or("(none)")
        )));
    }
    if layer.size.is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(foreign("its document is larger than 1 MiB".to_owned()));
    }
    let digest = Digest::parse(&layer.digest).map_err(|e| foreign(e.to_string()))?;
    let bytes = registry
        .get_blob(repository, &digest, MAX_DOCUMENT_BYTES)
        .await?;
    Ok(Some(bytes))
}

// ---- rollback manifests -----------------------------------------------------------------

/// Inputs of `rollbot manifest generate`.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub image: ImageRef,
    pub digest: Digest,
    pub tags: Vec<Tag>,
    /// The floating tags rollbot moves for this image; the first is read for the previous digest.
    pub floating: Vec<Tag>,
    pub previous: Option<Digest>,
    pub build_url: Option<String>,
    pub git_sha: Option<String>,
    /// Pass `--insecure` / `--src-tls-verify=false` in the generated commands.
    pub insecure: bool,
}

/// Builds the rollback manifest for a build about to be pushed.
///
/// Without an explicit previous digest, the live digest of the first floating tag is read:
/// this must run before the floating tag moves. If it already points at the new digest, the
/// existing rollback manifest's previous digest is reused, or generation fails.
///
/// # Errors
/// Registry errors, and a live tag that already points at the new digest with no manifest to
/// learn the previous one from.
pub async fn generate(
    registry: &RegistryClient,
    request: &GenerateRequest,
) -> Result<RollbackManifest, ArtifactError> {
    let previous = match &request.previous {
        Some(previous) => Some(previous.clone()),
        None => {
            let first = request.floating.first().ok_or_else(|| {
                ArtifactError::Conflict(
                    "no floating tag to read the previous digest from".to_owned(),
                )
            })?;
            match registry
                .head_manifest(&request.image.repository, &Reference::Tag(first.clone()))
                .await?
            {
                None => None, // first build
                Some(head) if head.digest == request.digest => {
                    match read_manifest(registry, &request.image, &request.digest).await? {
                        Some(existing) => existing.previous_digest,
                        None => {
                            return Err(ArtifactError::Conflict(format!(
                                "{}:{first} already points at {}: run `manifest generate` before pushing the floating tags, or pass --previous",
                                request.image, request.digest
                            )))
                        }
                    }
                }
                Some(head) => Some(head.digest),
            }
        }
    };
    if previous.as_ref() == Some(&request.digest) {
        return Err(ArtifactError::Conflict(
            "--previous equals --digest; a build cannot roll back to itself".to_owned(),
        ));
    }
    let rollback_tags: Vec<&Tag> = request
        .floating
        .iter()
        .filter(|tag| request.tags.contains(tag))
        .collect();
    let rollback_tags = if rollback_tags.is_empty() {
        request.floating.iter().collect()
    } else {
        rollback_tags
    };
    let (rollback_command, manual_command) = match &previous {
        None => (None, None),
        Some(previous) => {
            let command =
                rollback_command(&request.image, previous, &rollback_tags, request.insecure);
            let manual = manual_command(&request.image, previous, &rollback_tags, request.insecure);
            (Some(command), Some(manual))
        }
    };
    Ok(RollbackManifest {
        schema_version: SCHEMA_VERSION,
        image: request.image.clone(),
        current_digest: request.digest.clone(),
        current_tags: request.tags.clone(),
        previous_digest: previous,
        rollback_command,
        manual_command,
        created_at: now_rfc3339(),
        build_url: request.build_url.clone(),
        git_sha: request.git_sha.clone(),
    })
}

/// `rollbot rollback IMAGE --to DIGEST --tag T…`: the rollback to `digest` with rollbot, as
/// rollback manifests carry it and as a run that stopped part-way advises to finish it.
pub fn rollback_command(
    image: &impl std::fmt::Display,
    digest: &impl std::fmt::Display,
    tags: &[impl std::fmt::Display],
    insecure: bool,
) -> String {
    let mut command = format!("rollbot rollback {image} --to {digest}");
    for tag in tags {
        command.push_str(&format!(" --tag {tag}"));
    }
    if insecure {
        command.push_str(" --insecure");
    }
    command
}

/// The rollback to `digest` with skopeo, for when rollbot is not at hand: one digest-preserving
/// copy per tag (`--all` keeps every platform), never `docker pull/tag/push`.
pub fn manual_command(
    image: &impl std::fmt::Display,
    digest: &impl std::fmt::Display,
    tags: &[impl std::fmt::Display],
    insecure: bool,
) -> String {
    let tls = if insecure {
        " --src-tls-verify=false --dest-tls-verify=false"
    } else {
        ""
    };
    tags.iter()
        .map(|tag| {
            format!(
                "skopeo copy --all --preserve-digests{tls} docker://{image}@{digest} docker://{image}:{tag}"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Stores a rollback manifest document (the exact bytes of the file CI generated) next to the
/// image it describes.
///
/// # Errors
/// A document that does not parse or names another image, an image digest the registry does
/// not have (push the image first), a different document already stored (unless `replace`),
/// registry errors.
pub async fn push_manifest(
    registry: &RegistryClient,
    image: &ImageRef,
    document: &[u8],
    source_name: &str,
    replace: bool,
) -> Result<(RollbackManifest, Stored), ArtifactError> {
    let manifest = RollbackManifest::parse(document, source_name)?;
    if manifest.image != *image {
        return Err(ArtifactError::Conflict(format!(
            "{source_name} describes {}, not {image}",
            manifest.image
        )));
    }
    if registry
        .head_manifest(
            &image.repository,
            &Reference::Digest(manifest.current_digest.clone()),
        )
        .await?
        .is_none()
    {
        return Err(ArtifactError::Conflict(format!(
            "{image} has no image {}; push the image before its rollback manifest",
            manifest.current_digest
        )));
    }
    let tag = Tag::for_digest(&manifest.current_digest, "rollback");
    let stored = store(
        registry,
        image,
        &tag,
        ROLLBACK_MANIFEST_TYPE,
        document,
        &manifest.created_at,
        replace,
    )
    .await?;
    Ok((manifest, stored))
}

/// The rollback manifest of `digest`, or `None` when none was pushed.
///
/// # Errors
/// Registry errors; foreign or malformed content under the `.rollback` tag; a manifest that
/// describes another digest or image.
pub async fn read_manifest(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
) -> Result<Option<RollbackManifest>, ArtifactError> {
    let tag = Tag::for_digest(digest, "rollback");
    let Some(bytes) = fetch(
        registry,
        image,
        &tag,
        ROLLBACK_MANIFEST_TYPE,
        "rollback manifest",
    )
    .await?
    else {
        return Ok(None);
    };
    let manifest = RollbackManifest::parse(&bytes, &format!("{image}:{tag}"))?;
    if manifest.current_digest != *digest || manifest.image != *image {
        return Err(ArtifactError::Malformed {
            source_name: format!("{image}:{tag}"),
            what: "rollback manifest",
            detail: format!(
                "it describes {}@{}",
                manifest.image, manifest.current_digest
            ),
        });
    }
    Ok(Some(manifest))
}

// ---- bad marks --------------------------------------------------------------------------

/// Marks `digest` bad (or clears the mark), stored as an artifact next to it.
///
/// # Errors
/// Registry errors.
pub async fn mark(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    bad: bool,
    reason: &str,
    by: &str,
) -> Result<BadMark, ArtifactError> {
    let record = BadMark {
        schema_version: SCHEMA_VERSION,
        image: image.clone(),
        digest: digest.clone(),
        bad,
        reason: reason.to_owned(),
        marked_by: by.to_owned(),
        marked_at: now_rfc3339(),
    };
    let document = serde_json::to_vec_pretty(&record).unwrap_or_default();
    let tag = Tag::for_digest(digest, "bad");
    store(
        registry,
        image,
        &tag,
        BAD_MARK_TYPE,
        &document,
        &record.marked_at,
        true,
    )
    .await?;
    Ok(record)
}

/// The mark on `digest`, if any.
///
/// # Errors
/// Registry errors; foreign or malformed content under the `.bad` tag.
pub async fn read_mark(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
) -> Result<Option<BadMark>, ArtifactError> {
    let tag = Tag::for_digest(digest, "bad");
    let Some(bytes) = fetch(registry, image, &tag, BAD_MARK_TYPE, "bad-digest mark").await? else {
        return Ok(None);
    };
    let mark: BadMark = serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Malformed {
        source_name: format!("{image}:{tag}"),
        what: "bad-digest mark",
        detail: e.to_string(),
    })?;
    Ok(Some(mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        format!(
            r#"{{"schema_version": 1, "image": "registry.example.com/acme/app",
  "current_digest": "sha256:{}", "current_tags": ["latest", "v1.2.3"],
  "previous_digest": "sha256:{}", "rollback_command": "rollbot rollback registry.example.com/acme/app --to sha256:{}",
  "manual_command": null, "created_at": "2026-11-26T10:00:00Z", "build_url": null, "git_sha": "abc1234"}}"#,
            "a".repeat(64),
            "b".repeat(64),
            "b".repeat(64)
        )
    }

    #[test]
    fn rollback_manifests_parse_strictly() {
        let manifest = RollbackManifest::parse(sample().as_bytes(), "file").expect("valid");
        assert_eq!(manifest.current_tags.len(), 2);
        for (bad, expected) in [
            (
                sample().replace("\"git_sha\"", "\"gitsha\""),
                "unknown field `gitsha`",
            ),
            (
                sample().replace("\"schema_version\": 1", "\"schema_version\": 2"),
                "schema_version 2 is not supported",
            ),
            (
                sample().replace("2026-11-26T10:00:00Z", "yesterday"),
                "not an RFC 3339 time",
            ),
            (
                sample().replace(&"b".repeat(64), "xyz"),
                "digest 'sha256:xyz' is not valid",
            ),
            ("[1, 2]".to_owned(), "invalid type"),
            ("".to_owned(), "EOF"),
        ] {
            let error = RollbackManifest::parse(bad.as_bytes(), "file").expect_err(expected);
            assert!(
                error.to_string().contains(expected),
                "{error} should contain {expected}"
            );
        }
    }

    #[test]
    fn artifact_manifests_are_deterministic_and_parse_as_oci_artifacts() {
        let a = artifact_manifest(ROLLBACK_MANIFEST_TYPE, b"{\"x\":1}", "2026-11-26T10:00:00Z");
        let b = artifact_manifest(ROLLBACK_MANIFEST_TYPE, b"{\"x\":1}", "2026-11-26T10:00:00Z");
        assert_eq!(a, b);
        let parsed = RawManifest::parse(a.bytes.clone(), Some(MediaType::OciManifest.as_str()))
            .expect("valid");
        assert_eq!(
            parsed.artifact_type().as_deref(),
            Some(ROLLBACK_MANIFEST_TYPE)
        );
    }
}
