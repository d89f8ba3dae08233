//! The nouns of a rollback: `Digest`, `Tag`, `Repository`, `RegistryHost`, `ImageRef`, `Reference`.
//!
//! Every value that arrives from outside (CLI argument, config, chat text, registry answer) is
//! parsed into one of these once, at the edge. A function that takes a `Digest` never checks it
//! again. The grammars are the OCI distribution spec's (see `shared/reference/oci-distribution-rules.md`).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a piece of text is not a valid digest, tag, repository, host or image reference.
///
/// The message names the offending text and the rule it breaks, so it can be shown to a user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} '{text}' is not valid: {rule}")]
pub struct ParseError {
    what: &'static str,
    text: String,
    rule: &'static str,
}

impl ParseError {
    fn new(what: &'static str, text: &str, rule: &'static str) -> Self {
        // Keep error lines short and printable even when the input was garbage.
        let mut shown: String = text.chars().take(100).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        let shown = shown.escape_debug().to_string();
        ParseError {
            what,
            text: shown,
            rule,
        }
    }
}

/// The manifest media types rollbot copies. Schema 1 and unknown types are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MediaType {
    #[serde(rename = "application/vnd.oci.image.index.v1+json")]
    OciIndex,
    #[serde(rename = "application/vnd.docker.distribution.manifest.list.v2+json")]
    DockerList,
    #[serde(rename = "application/vnd.oci.image.manifest.v1+json")]
    OciManifest,
    #[serde(rename = "application/vnd.docker.distribution.manifest.v2+json")]
    DockerManifest,
}

impl MediaType {
    pub const ALL: [MediaType; 4] = [
        MediaType::OciIndex,
        MediaType::DockerList,
        MediaType::OciManifest,
        MediaType::DockerManifest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::OciIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::DockerList => "application/vnd.docker.distribution.manifest.list.v2+json",
            MediaType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// Parses a media type, ignoring parameters (`; charset=…`) as the spec says clients should.
    pub fn parse(text: &str) -> Option<MediaType> {
        let bare = text.split(';').next().unwrap_or("").trim();
        MediaType::ALL.into_iter().find(|m| m.as_str() == bare)
    }

    /// An index or manifest list: references platform manifests rather than layers.
    pub fn is_index(self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerList)
    }

    /// Short human name for reports.
    pub fn describe(self) -> &'static str {
        match self {
            MediaType::OciIndex => "OCI image index",
            MediaType::DockerList => "Docker manifest list",
            MediaType::OciManifest => "OCI image manifest",
            MediaType::DockerManifest => "Docker schema 2 manifest",
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A content digest. Only `sha256` is accepted: it is what every registry in use computes, and
/// rollbot must be able to recompute a digest from the bytes it copies.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    ///
    /// # Errors
    /// Any other algorithm, length or alphabet.
    pub fn parse(text: &str) -> Result<Digest, ParseError> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            return Err(ParseError::new(
                "digest",
                text,
                "expected sha256:<64 hex characters>",
            ));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseError::new(
                "digest",
                text,
                "expected sha256: followed by exactly 64 lowercase hex characters",
            ));
        }
        Ok(Digest(text.to_owned()))
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part without the algorithm, as used in cosign-style tags (`sha256-<hex>.rollback`).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:0123456789ab`: enough to tell digests apart in a human report.
    pub fn short(&self) -> &str {
        &self.0[..("sha256:".len() + 12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl<'de> serde::Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Tag::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Tag {
    /// # Errors
    /// Text that does not match the distribution spec's tag grammar.
    pub fn parse(text: &str) -> Result<Tag, ParseError> {
        let bytes = text.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes[1..]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Tag(text.to_owned()))
        } else {
            Err(ParseError::new(
                "tag",
                text,
                "a tag is 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cosign-style tag of an artifact about `digest`: `sha256-<hex>.<suffix>`.
    /// `suffix` is one of rollbot's own short lowercase words.
    pub fn for_digest(digest: &Digest, suffix: &'static str) -> Tag {
        debug_assert!(suffix.bytes().all(|b| b.is_ascii_lowercase()) && suffix.len() <= 40);
        Tag(format!("sha256-{}.{suffix}", digest.hex()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Tag {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

/// A repository name inside a registry, e.g. `acme/app`:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Repository(String);

impl Repository {
    /// # Errors
    /// Text that does not match the distribution spec's repository name grammar.
    pub fn parse(text: &str) -> Result<Repository, ParseError> {
        const RULE: &str = "a repository is lowercase path components of letters and digits, separated inside a component by '.', '_', '__' or '-'";
        if text.is_empty() || text.len() > 255 || !text.split('/').all(valid_path_component) {
            return Err(ParseError::new("repository", text, RULE));
        }
        Ok(Repository(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_path_component(component: &str) -> bool {
    // [a-z0-9]+ ( (\.|_|__|-+) [a-z0-9]+ )*
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registry host with an optional port, lowercased: `registry.example.com`, `127.0.0.1:5000`,
/// `docker.io`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RegistryHost(String);

impl RegistryHost {
    /// # Errors
    /// Empty text, a scheme (`https://`), a path, or characters that cannot be in a host name.
    pub fn parse(text: &str) -> Result<RegistryHost, ParseError> {
        const RULE: &str =
            "expected a host name or IP address with an optional :port, without scheme or path";
        let (host, port) = match text.rsplit_once(':') {
            // An IPv6 literal in brackets has colons of its own.
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (text, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && (host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                || (host.starts_with('[')
                    && host.ends_with(']')
                    && host[1..host.len() - 1]
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':')));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if !host_ok || !port_ok {
            return Err(ParseError::new("registry host", text, RULE));
        }
        Ok(RegistryHost(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Docker Hub is named `docker.io` (or `index.docker.io`) by people but served from
    /// `registry-1.docker.io`.
    pub fn is_docker_hub(&self) -> bool {
        matches!(
            self.0.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    }

    /// The `host[:port]` that HTTP requests go to.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            "registry-1.docker.io"
        } else {
            &self.0
        }
    }

    /// True for `localhost`, `127.0.0.0/8` and `[::1]`, with any port.
    pub fn is_loopback(&self) -> bool {
        let host = match self.0.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => host,
            _ => self.0.as_str(),
        };
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository in a registry, without tag or digest: `registry.example.com/acme/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub registry: RegistryHost,
    pub repository: Repository,
}

/// What a reference after an image name points at: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// `sha256:…` is a digest, anything else must be a tag.
    ///
    /// # Errors
    /// Text that is neither a valid digest nor a valid tag. Text that starts with an algorithm
    /// prefix (`sha256:`) is always judged as a digest, so a truncated digest is reported as such.
    pub fn parse(text: &str) -> Result<Reference, ParseError> {
        if text.contains(':') {
            Digest::parse(text).map(Reference::Digest)
        } else {
            Tag::parse(text).map(Reference::Tag)
        }
    }

    /// The path segment used in `/v2/<name>/manifests/<reference>`.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(tag) => tag.as_str(),
            Reference::Digest(digest) => digest.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Tag> for Reference {
    fn from(tag: Tag) -> Self {
        Reference::Tag(tag)
    }
}

impl From<Digest> for Reference {
    fn from(digest: Digest) -> Self {
        Reference::Digest(digest)
    }
}

/// Where a tag points, as far as the registry said when it was last read.
///
/// Stored as the digest, `null` for a tag that does not exist (the form older records have), or
/// `{"unknown": "<why>"}` when the registry could not be read: a write whose answer never came
/// may still have landed, so "unknown" is never shown as "not moved".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TagNow {
    At(Digest),
    Missing,
    Unknown { unknown: String },
}

impl TagNow {
    /// The digest, when known.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            TagNow::At(digest) => Some(digest),
            TagNow::Missing | TagNow::Unknown { .. } => None,
        }
    }

    pub fn is(&self, digest: &Digest) -> bool {
        self.digest() == Some(digest)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, TagNow::Unknown { .. })
    }

    /// `sha256:0123456789ab`, `(missing)` or `unknown`, for people.
    pub fn short(&self) -> &str {
        match self {
            TagNow::At(digest) => digest.short(),
            TagNow::Missing => "(missing)",
            TagNow::Unknown { .. } => "unknown",
        }
    }
}

impl From<Option<Digest>> for TagNow {
    fn from(digest: Option<Digest>) -> Self {
        digest.map_or(TagNow::Missing, TagNow::At)
    }
}

impl ImageRef {
    /// Parses `host[:port]/repo` (no tag, no digest).
    ///
    /// The registry host is required: rollbot writes to production registries and does not guess
    /// that `acme/app` means Docker Hub. Write `docker.io/acme/app` for that.
    ///
    /// # Errors
    /// A missing host, an invalid repository, or a trailing `:tag` / `@digest`.
    pub fn parse(text: &str) -> Result<ImageRef, ParseError> {
        let (image, reference) = ImageRef::parse_with_reference(text)?;
        if reference.is_some() {
            return Err(ParseError::new(
                "image",
                text,
                "expected host[:port]/repository without a :tag or @digest here",
            ));
        }
        Ok(image)
    }

    /// Parses `host[:port]/repo`, `host[:port]/repo:tag` or `host[:port]/repo@sha256:…`.
    ///
    /// # Errors
    /// See [`ImageRef::parse`]; also an invalid tag or digest.
    pub fn parse_with_reference(text: &str) -> Result<(ImageRef, Option<Reference>), ParseError> {
        let (name, reference) = if let Some((name, digest)) = text.split_once('@') {
            (name, Some(Reference::Digest(Digest::parse(digest)?)))
        } else {
            // A ':' after the last '/' is a tag; one before it is a port.
            let last_slash = text.rfind('/').unwrap_or(0);
            match text[last_slash..].find(':') {
                Some(offset) => {
                    let colon = last_slash + offset;
                    (
                        &text[..colon],
                        Some(Reference::Tag(Tag::parse(&text[colon + 1..])?)),
                    )
                }
                None => (text, None),
            }
        };
        let Some((host, repository)) = name.split_once('/') else {
            return Err(ParseError::new(
                "image",
                text,
                "expected host[:port]/repository, e.g. registry.example.com/acme/app or docker.io/library/nginx",
            ));
        };
        let looks_like_host = host.contains('.') || host.contains(':') || host == "localhost";
        if !looks_like_host {
            return Err(ParseError::new(
                "image",
                text,
                "the first path component must be a registry host (write docker.io/... for Docker Hub)",
            ));
        }
        let registry = RegistryHost::parse(host)?;
        let repository = if registry.is_docker_hub() && !repository.contains('/') {
            // Docker Hub's official images live under library/.
            Repository::parse(&format!("library/{repository}"))?
        } else {
            Repository::parse(repository)?
        };
        Ok((
            ImageRef {
                registry,
                repository,
            },
            reference,
        ))
    }

    /// `host/repo@digest`, the `{ref}` of a health check.
    pub fn at(&self, digest: &Digest) -> String {
        format!("{self}@{digest}")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImageRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_in_canonical_sha256_form() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "sha256:abc".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}", "g".repeat(64)),
            "a".repeat(64),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            Digest::of(b"{}").as_str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(Tag::parse(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129), "ünï"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories_follow_the_distribution_grammar() {
        for good in ["app", "acme/app", "a-b/c__d/e.f", "a--b"] {
            assert!(Repository::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme/app",
            "acme//app",
            "/app",
            "app/",
            "a...b",
            "a_-b",
            "-a",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references_need_a_registry_host() {
        let (image, reference) =
            ImageRef::parse_with_reference("127.0.0.1:5000/acme/app:v1").expect("valid");
        assert_eq!(image.registry.as_str(), "127.0.0.1:5000");
        assert_eq!(image.repository.as_str(), "acme/app");
        assert_eq!(
            reference,
            Some(Reference::Tag(Tag::parse("v1").expect("tag")))
        );

        let digest = format!("sha256:{}", "b".repeat(64));
        let (_, reference) =
            ImageRef::parse_with_reference(&format!("localhost:5000/app@{digest}")).expect("ok");
        assert_eq!(
            reference,
            Some(Reference::Digest(Digest::parse(&digest).expect("d")))
        );

        let image = ImageRef::parse("docker.io/nginx").expect("hub");
        assert_eq!(image.repository.as_str(), "library/nginx");
        assert_eq!(image.registry.api_host(), "registry-1.docker.io");

        assert!(ImageRef::parse("acme/app").is_err());
        assert!(ImageRef::parse("app").is_err());
        assert!(ImageRef::parse("registry.example.com/acme/app:latest").is_err());
        assert!(ImageRef::parse("https://registry.example.com/acme/app").is_err());
    }

    #[test]
    fn parse_errors_name_the_input_and_the_rule() {
        let err = Digest::parse("sha256:123").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "digest 'sha256:123' is not valid: expected sha256: followed by exactly 64 lowercase hex characters"
        );
    }

    #[test]
    fn tag_now_reads_older_records_and_keeps_unknown_apart_from_missing() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let old: Vec<(Tag, TagNow)> =
            serde_json::from_str(&format!(r#"[["latest","{digest}"],["stable",null]]"#))
                .expect("records written before TagNow existed still read");
        assert_eq!(
            old[0].1,
            TagNow::At(Digest::parse(&digest).expect("digest"))
        );
        assert_eq!(old[1].1, TagNow::Missing);
        let unknown = TagNow::Unknown {
            unknown: "registry did not answer".to_owned(),
        };
        let text = serde_json::to_string(&unknown).expect("json");
        assert_eq!(text, r#"{"unknown":"registry did not answer"}"#);
        assert_eq!(
            serde_json::from_str::<TagNow>(&text).expect("back"),
            unknown
        );
        assert_eq!(
            (TagNow::Missing.short(), unknown.short()),
            ("(missing)", "unknown")
        );
    }
}
