//! Builds and pushes test images with plain HTTP calls, independent of rollbot's own registry
//! client, and reads the registry back the same way (so assertions do not trust the code under
//! test): a two-platform OCI index, a Docker schema 2 manifest, a Docker manifest list.

use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The kinds of image a rollback must handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OciIndex,
    DockerSchema2,
    DockerList,
}

/// What was pushed: the top manifest, and per platform (if any) the child's digest.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub children: Vec<(String, String)>,
}

/// Plain HTTP access to a test registry.
#[derive(Debug, Clone)]
pub struct Seeder {
    http: reqwest::Client,
    base: String,
    basic: Option<(String, String)>,
}

impl Seeder {
    pub fn new(host: &str) -> Seeder {
        Seeder {
            http: reqwest::Client::new(),
            base: format!("http://{host}"),
            basic: None,
        }
    }

    pub fn with_basic(host: &str, user: &str, password: &str) -> Seeder {
        Seeder {
            basic: Some((user.to_owned(), password.to_owned())),
            ..Seeder::new(host)
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.basic {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let start = self
            .request(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("start upload");
        assert_eq!(start.status(), 202, "start upload");
        let location = start.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let path = &location[location.find("/v2/").expect("path")..];
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = self
            .request(reqwest::Method::PUT, &format!("{path}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(put.status(), 201, "finish upload");
        digest
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("put manifest");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "put manifest {repo}:{reference}: {body}");
    }

    /// The exact bytes and Content-Type a tag or digest serves.
    pub async fn get_raw(&self, repo: &str, reference: &str) -> (Vec<u8>, String) {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .expect("get manifest");
        assert_eq!(response.status(), 200, "get {repo}:{reference}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        (response.bytes().await.expect("body").to_vec(), content_type)
    }

    /// The digest a tag points at, or `None`.
    pub async fn digest_of(&self, repo: &str, reference: &str) -> Option<String> {
        let response = self
            .request(
                reqwest::Method::HEAD,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .expect("head manifest");
        (response.status() == 200).then(|| {
            response.headers()["docker-content-digest"]
                .to_str()
                .expect("digest")
                .to_owned()
        })
    }

    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &format!("/v2/{repo}/manifests/{digest}"),
            )
            .send()
            .await
            .expect("delete");
        assert_eq!(response.status(), 202, "delete {digest}");
    }

    /// Points `tag` at an already pushed manifest (what CI does when it pushes).
    pub async fn tag(&self, repo: &str, image: &Pushed, tag: &str) {
        self.put_manifest(repo, tag, image.media_type, &image.bytes)
            .await;
    }

    /// One platform image: config + one layer + manifest, pushed by digest.
    async fn push_platform(
        &self,
        repo: &str,
        version: &str,
        arch: &str,
        docker: bool,
    ) -> (String, usize) {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["VERSION={version}"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(format!("{repo} {version} {arch} layer").as_bytes())
        );
        let layer = format!("{repo} {version} {arch} layer").into_bytes();
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, &layer).await;
        let (media_type, config_type, layer_type) = if docker {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        // Deliberately not canonical JSON (odd indentation, trailing newline): a copy that
        // re-serialises would change the digest.
        let manifest = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{media_type}\",\n   \"config\": {{ \"mediaType\": \"{config_type}\", \"digest\": \"{config_digest}\", \"size\": {} }},\n   \"layers\": [ {{ \"mediaType\": \"{layer_type}\", \"digest\": \"{layer_digest}\", \"size\": {} }} ]\n}}\n",
            config.len(),
            layer.len()
        );
        let digest = sha256(manifest.as_bytes());
        self.put_manifest(repo, &digest, media_type, manifest.as_bytes())
            .await;
        (digest, manifest.len())
    }

    /// Pushes `version` of `repo` as `kind` and points `tags` at it.
    pub async fn push(&self, repo: &str, kind: Kind, version: &str, tags: &[&str]) -> Pushed {
        let pushed = match kind {
            Kind::DockerSchema2 => {
                let (digest, _) = self.push_platform(repo, version, "amd64", true).await;
                let (bytes, _) = self.get_raw(repo, &digest).await;
                Pushed {
                    digest,
                    media_type: DOCKER_MANIFEST,
                    bytes,
                    children: Vec::new(),
                }
            }
            Kind::OciIndex | Kind::DockerList => {
                let docker = kind == Kind::DockerList;
                let (child_type, index_type) = if docker {
                    (DOCKER_MANIFEST, DOCKER_LIST)
                } else {
                    (OCI_MANIFEST, OCI_INDEX)
                };
                let mut entries = Vec::new();
                let mut children = Vec::new();
                for arch in ["amd64", "arm64"] {
                    let (digest, size) = self.push_platform(repo, version, arch, docker).await;
                    entries.push(format!(
                        "    {{\"mediaType\": \"{child_type}\", \"digest\": \"{digest}\", \"size\": {size}, \"platform\": {{\"architecture\": \"{arch}\", \"os\": \"linux\"}}}}"
                    ));
                    children.push((format!("linux/{arch}"), digest));
                }
                let index = format!(
                    "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{index_type}\",\n  \"manifests\": [\n{}\n  ]\n}}\n",
                    entries.join(",\n")
                );
                let digest = sha256(index.as_bytes());
                self.put_manifest(repo, &digest, index_type, index.as_bytes())
                    .await;
                Pushed {
                    digest,
                    media_type: index_type,
                    bytes: index.into_bytes(),
                    children,
                }
            }
        };
        for tag in tags {
            self.tag(repo, &pushed, tag).await;
        }
        pushed
    }
}
