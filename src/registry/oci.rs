//! Manifests as bytes: the four media types a retag handles, and what a manifest references.
//!
//! A manifest is kept as the exact bytes the registry sent ([`RawManifest`]); it is parsed only to
//! learn its media type and the descriptors it references, never re-serialised (that would change
//! its digest, see `shared/reference/registry-notes.md`).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::model::Digest;
pub use crate::domain::model::MediaType;

/// The `Accept` header for every manifest request: all four types, so the registry never
/// converts a manifest on the fly (to schema 1, or to one platform of an index).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Why the bytes a registry sent cannot be used as a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON: {0}")]
    NotJson(String),
    #[error("schema 1 manifests are not supported (Docker deprecated them); push the image again with a current tool")]
    SchemaOne,
    #[error("media type '{0}' is not a container image manifest or index")]
    Unsupported(String),
    #[error(
        "the manifest says its media type is {body} but the registry sent Content-Type {header}"
    )]
    MediaTypeMismatch { body: String, header: String },
    #[error("the manifest references an invalid digest: {0}")]
    BadReference(String),
}

/// A manifest exactly as stored, with its digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: MediaType,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    manifests: Option<Vec<DescriptorJson>>,
    config: Option<DescriptorJson>,
    layers: Option<Vec<DescriptorJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
    platform: Option<Platform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    urls: Vec<String>,
}

/// `os/architecture[/variant]` of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Something a manifest references that must exist for the image to be pullable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// What it is, for people: `linux/arm64`, `attestation for sha256:…`, `config`, `layer 3`.
    pub label: String,
    /// A manifest (index child) rather than a blob (config, layer).
    pub is_manifest: bool,
}

impl RawManifest {
    /// Checks that `bytes` are a manifest of a supported type and agree with `content_type`.
    ///
    /// The digest is computed from the bytes here; callers compare it with what they asked for.
    ///
    /// # Errors
    /// Not JSON, schema 1, an unsupported media type, or a body/header media type disagreement.
    pub fn parse(bytes: Bytes, content_type: Option<&str>) -> Result<RawManifest, ManifestError> {
        let json: ManifestJson =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        if json.schema_version == Some(1) {
            return Err(ManifestError::SchemaOne);
        }
        let header = content_type
            .map(|h| h.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|h| !h.is_empty());
        let media_type = match (&json.media_type, &header) {
            (Some(body), Some(header)) if body != header && MediaType::parse(header).is_some() => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.clone(),
                    header: header.clone(),
                })
            }
            (Some(body), _) => {
                MediaType::parse(body).ok_or_else(|| ManifestError::Unsupported(body.clone()))?
            }
            (None, Some(header)) if MediaType::parse(header).is_some() => MediaType::parse(header)
                .ok_or_else(|| ManifestError::Unsupported(header.clone()))?,
            (None, Some(header)) if header.contains("prettyjws") || header.contains("v1+json") => {
                return Err(ManifestError::SchemaOne)
            }
            // OCI allows omitting mediaType; the shape tells an index from a manifest.
            (None, _) if json.manifests.is_some() => MediaType::OciIndex,
            (None, _) if json.config.is_some() => MediaType::OciManifest,
            (None, header) => {
                return Err(ManifestError::Unsupported(
                    header.clone().unwrap_or_else(|| "(none)".to_owned()),
                ))
            }
        };
        let digest = Digest::of(&bytes);
        Ok(RawManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// Everything this manifest references that a pull needs: for an index, every child
    /// manifest; for an image manifest, its config and layers. Foreign (non-distributable)
    /// layers are left out because registries do not store them.
    ///
    /// # Errors
    /// A referenced digest that is not a valid sha256 digest.
    pub fn references(&self) -> Result<Vec<Reference>, ManifestError> {
        let json: ManifestJson = serde_json::from_slice(&self.bytes)
            .map_err(|e| ManifestError::NotJson(e.to_string()))?;
        let parse = |d: &DescriptorJson| {
            Digest::parse(&d.digest).map_err(|e| ManifestError::BadReference(e.to_string()))
        };
        let mut out = Vec::new();
        if self.media_type.is_index() {
            for child in json.manifests.iter().flatten() {
                let attestation_for = (child
                    .annotations
                    .get("vnd.docker.reference.type")
                    .map(String::as_str)
                    == Some("attestation-manifest"))
                .then(|| {
                    child
                        .annotations
                        .get("vnd.docker.reference.digest")
                        .cloned()
                })
                .flatten();
                let label = match (&attestation_for, &child.platform) {
                    (Some(subject), _) => format!("attestation for {subject}"),
                    (None, Some(platform)) => platform.to_string(),
                    (None, None) => "unnamed platform".to_owned(),
                };
                out.push(Reference {
                    digest: parse(child)?,
                    media_type: child.media_type.clone().unwrap_or_default(),
                    size: child.size,
                    label,
                    is_manifest: true,
                });
            }
        } else {
            if let Some(config) = &json.config {
                out.push(Reference {
                    digest: parse(config)?,
                    media_type: config.media_type.clone().unwrap_or_default(),
                    size: config.size,
                    label: "config".to_owned(),
                    is_manifest: false,
                });
            }
            for (index, layer) in json.layers.iter().flatten().enumerate() {
                let media_type = layer.media_type.clone().unwrap_or_default();
                let foreign = !layer.urls.is_empty()
                    || media_type.contains("foreign")
                    || media_type.contains("nondistributable");
                if foreign {
                    continue;
                }
                out.push(Reference {
                    digest: parse(layer)?,
                    media_type,
                    size: layer.size,
                    label: format!("layer {}", index + 1),
                    is_manifest: false,
                });
            }
        }
        Ok(out)
    }

    /// `Some(type)` when this is an OCI artifact (a signature, an SBOM, a rollback manifest)
    /// rather than a runnable image: it has an `artifactType`, or its config is not an image
    /// config. Rolling a tag back to an artifact would break every pull of that tag.
    pub fn artifact_type(&self) -> Option<String> {
        let json: ManifestJson = serde_json::from_slice(&self.bytes).ok()?;
        if let Some(artifact_type) = json.artifact_type {
            return Some(artifact_type);
        }
        if self.media_type.is_index() {
            return None;
        }
        let config_type = json.config.and_then(|c| c.media_type).unwrap_or_default();
        let image_config = matches!(
            config_type.as_str(),
            "application/vnd.oci.image.config.v1+json"
                | "application/vnd.docker.container.image.v1+json"
        );
        (!image_config).then_some(config_type)
    }

    /// The platforms of an index (empty for a single manifest).
    pub fn platforms(&self) -> Vec<String> {
        match self.references() {
            Ok(references) => references
                .into_iter()
                .filter(|r| r.is_manifest && !r.label.starts_with("attestation"))
                .map(|r| r.label)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CHILD_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn index(media_type: Option<&str>) -> Bytes {
        let mt = media_type.map_or(String::new(), |m| format!("\"mediaType\": \"{m}\",\n"));
        Bytes::from(format!(
            r#"{{ "schemaVersion": 2, {mt} "manifests": [
  {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{CHILD_A}", "size": 1, "platform": {{"os": "linux", "architecture": "amd64"}}}},
  {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{CHILD_B}", "size": 1, "platform": {{"os": "linux", "architecture": "arm64", "variant": "v8"}}}},
  {{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{CHILD_B}", "size": 1, "platform": {{"os": "unknown", "architecture": "unknown"}},
    "annotations": {{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "{CHILD_A}"}}}}
]}}"#
        ))
    }

    #[test]
    fn index_children_are_labelled_by_platform() {
        let manifest = RawManifest::parse(
            index(Some("application/vnd.oci.image.index.v1+json")),
            Some("application/vnd.oci.image.index.v1+json"),
        )
        .expect("valid");
        assert_eq!(manifest.media_type, MediaType::OciIndex);
        let labels: Vec<String> = manifest
            .references()
            .expect("refs")
            .into_iter()
            .map(|r| r.label)
            .collect();
        assert_eq!(
            labels,
            vec![
                "linux/amd64".to_owned(),
                "linux/arm64/v8".to_owned(),
                format!("attestation for {CHILD_A}")
            ]
        );
        assert_eq!(manifest.platforms(), vec!["linux/amd64", "linux/arm64/v8"]);
    }

    #[test]
    fn media_type_comes_from_body_then_header_then_shape() {
        let no_type = index(None);
        let m = RawManifest::parse(
            no_type.clone(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        )
        .expect("header");
        assert_eq!(m.media_type, MediaType::DockerList);
        let m = RawManifest::parse(no_type, None).expect("shape");
        assert_eq!(m.media_type, MediaType::OciIndex);
        let mismatch = RawManifest::parse(
            index(Some("application/vnd.oci.image.index.v1+json")),
            Some("application/vnd.docker.distribution.manifest.list.v2+json"),
        );
        assert!(matches!(
            mismatch,
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn artifacts_are_told_apart_from_images() {
        let image = Bytes::from_static(br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "size": 2}, "layers": []}"#);
        assert_eq!(
            RawManifest::parse(image, None)
                .expect("image")
                .artifact_type(),
            None
        );
        let artifact = Bytes::from_static(br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/vnd.rollbot.rollback-manifest.v1+json", "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2}, "layers": []}"#);
        assert_eq!(
            RawManifest::parse(artifact, None)
                .expect("artifact")
                .artifact_type()
                .as_deref(),
            Some("application/vnd.rollbot.rollback-manifest.v1+json")
        );
        let signature = Bytes::from_static(br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "size": 2}, "layers": []}"#);
        assert!(RawManifest::parse(signature, None)
            .expect("sig")
            .artifact_type()
            .is_some());
    }

    #[test]
    fn schema_one_garbage_and_foreign_types_are_refused() {
        let schema1 = Bytes::from_static(br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#);
        assert_eq!(
            RawManifest::parse(schema1, None),
            Err(ManifestError::SchemaOne)
        );
        assert!(matches!(
            RawManifest::parse(Bytes::from_static(b"<html>"), None),
            Err(ManifestError::NotJson(_))
        ));
        let helm = Bytes::from_static(
            br#"{"schemaVersion": 2, "mediaType": "application/vnd.cncf.helm.chart.v1+json"}"#,
        );
        assert!(matches!(
            RawManifest::parse(helm, None),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
