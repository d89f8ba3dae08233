//! Answers into errors: what a registry's unsuccessful answer (by status, error code and
//! request), a 401 after the challenge, or a transport failure means as a [`RegistryError`];
//! the distribution spec's error body; the headers every answer is read for
//! (`Docker-Content-Digest`, `ratelimit-remaining`).

use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};

use super::auth::{Challenge, Credentials};
use super::counts::Kind;
use super::request::Op;
use super::{RegistryClient, RegistryError};
use crate::domain::model::Digest;
use crate::error_chain;
use crate::lock;

/// A header's value as trimmed text, if it is there and is text.
pub(super) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The distribution spec's error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Default)]
pub(super) struct ErrorBody {
    codes: Vec<String>,
    /// One line for people: `CODE: message; CODE: message`, or the start of a body that is not
    /// the spec's JSON (an HTML error page), or empty.
    text: String,
}

impl ErrorBody {
    pub(super) async fn read(response: Response) -> ErrorBody {
        let bytes = response.bytes().await.unwrap_or_default();
        ErrorBody::parse(&bytes)
    }

    fn parse(bytes: &[u8]) -> ErrorBody {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: Option<String>,
            message: Option<String>,
        }
        if let Ok(body) = serde_json::from_slice::<Body>(bytes) {
            let codes = body.errors.iter().filter_map(|e| e.code.clone()).collect();
            let text = body
                .errors
                .iter()
                .map(|e| match (&e.code, &e.message) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.clone(),
                    (None, Some(message)) => message.clone(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return ErrorBody { codes, text };
        }
        let text: String = String::from_utf8_lossy(bytes)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        ErrorBody {
            codes: Vec::new(),
            text,
        }
    }

    fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }

    /// The body's text, or the status's reason phrase when the body said nothing.
    pub(super) fn detail(self, status: StatusCode) -> String {
        if self.text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        } else {
            self.text
        }
    }
}

impl RegistryClient {
    /// What a 401 means once the challenge was answered (or could not be).
    pub(super) fn unauthorized(&self, op: &Op<'_>) -> RegistryError {
        match (&self.credentials, op.push) {
            (Credentials::Anonymous, _) => RegistryError::AuthRequired {
                registry: self.host.clone(),
                repository: op.repository.clone(),
            },
            // Token registries answer 401 when the token lacks the push scope.
            (Credentials::Basic { .. }, true)
                if matches!(lock(&self.auth).challenge, Some(Challenge::Bearer { .. })) =>
            {
                RegistryError::Denied {
                    registry: self.host.clone(),
                    repository: op.repository.clone(),
                    action: "push",
                    who: self.credentials.describe(),
                    detail: "; the account needs write access to the repository".to_owned(),
                }
            }
            (Credentials::Basic { .. }, _) => RegistryError::CredentialsRejected {
                registry: self.host.clone(),
                who: self.credentials.describe(),
            },
        }
    }

    /// What an unsuccessful answer to `op` means. The body is read for its error codes, except
    /// for a HEAD (whose answer has none).
    pub(super) async fn status_error(&self, op: &Op<'_>, response: Response) -> RegistryError {
        let status = response.status();
        let body = if op.method == Method::HEAD {
            ErrorBody::default()
        } else {
            ErrorBody::read(response).await
        };
        self.answer_error(op, status, body)
    }

    /// [`RegistryClient::status_error`] once the body is read: `404 NAME_UNKNOWN` is an unknown
    /// repository, a manifest GET's 404 an unknown tag or manifest, 403 a denial naming the
    /// rights and the account, anything else the status with the registry's own words.
    fn answer_error(&self, op: &Op<'_>, status: StatusCode, body: ErrorBody) -> RegistryError {
        match status {
            StatusCode::NOT_FOUND if body.has("NAME_UNKNOWN") => RegistryError::RepositoryUnknown {
                image: self.image(op.repository),
            },
            StatusCode::NOT_FOUND if op.kind == Kind::ManifestGet => {
                let reference = op.path.rsplit('/').next().unwrap_or_default();
                let what = if reference.starts_with("sha256:") {
                    format!("manifest {reference}")
                } else {
                    format!("tag '{reference}'")
                };
                RegistryError::ManifestUnknown {
                    image: self.image(op.repository),
                    what,
                    hint: String::new(),
                }
            }
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry: self.host.clone(),
                repository: op.repository.clone(),
                action: if op.push { "push" } else { "pull" },
                who: self.credentials.describe(),
                detail: if body.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", body.text)
                },
            },
            _ => RegistryError::Status {
                registry: self.host.clone(),
                request: op.describe(),
                status: status.as_u16(),
                detail: body.detail(status),
            },
        }
    }

    /// A request that got no answer: a timeout, or why the registry could not be reached.
    pub(super) fn transport_error(&self, op: &Op<'_>, error: &reqwest::Error) -> RegistryError {
        if error.is_timeout() {
            RegistryError::Timeout {
                registry: self.host.clone(),
                timeout: humantime::format_duration(self.timeout).to_string(),
            }
        } else {
            let mut detail = error_chain(error);
            // reqwest repeats the URL; the registry is already named.
            if let Some(stripped) = detail.strip_prefix(&format!(
                "error sending request for url ({}{}): ",
                self.base, op.path
            )) {
                detail = stripped.to_owned();
            }
            RegistryError::Unreachable {
                registry: self.host.clone(),
                detail,
            }
        }
    }

    /// An answer to `op` that rollbot cannot use, and why.
    pub(super) fn invalid(&self, op: &Op<'_>, detail: String) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.host.clone(),
            request: op.describe(),
            detail,
        }
    }

    /// The answer's `Docker-Content-Digest`, if it sent one.
    ///
    /// # Errors
    /// `InvalidResponse` for a header that is not a digest.
    pub(super) fn digest_header(
        &self,
        op: &Op<'_>,
        headers: &HeaderMap,
    ) -> Result<Option<Digest>, RegistryError> {
        match header_str(headers, "docker-content-digest") {
            None => Ok(None),
            Some(text) => Digest::parse(text)
                .map(Some)
                .map_err(|e| self.invalid(op, format!("Docker-Content-Digest: {e}"))),
        }
    }

    /// Remembers (and logs when it changes) the `ratelimit-remaining` header Docker Hub sends.
    pub(super) fn note_ratelimit(&self, headers: &HeaderMap) {
        if let Some(remaining) = header_str(headers, "ratelimit-remaining") {
            let mut last = lock(&self.ratelimit_remaining);
            if last.as_deref() != Some(remaining) {
                tracing::info!(registry = %self.host, ratelimit_remaining = remaining, "Registry rate limit.");
                *last = Some(remaining.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::registry::testing::{basic, client, repository};

    #[test]
    fn error_bodies_become_one_line() {
        let body = ErrorBody::parse(
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#,
        );
        assert!(body.has("MANIFEST_INVALID"));
        assert_eq!(body.text, "MANIFEST_INVALID: manifest invalid");
        let html = ErrorBody::parse(b"<html>\n  <body>502 Bad Gateway</body>\n</html>");
        assert_eq!(html.text, "<html> <body>502 Bad Gateway</body> </html>");
        let two = ErrorBody::parse(br#"{"errors":[{"code":"DENIED"},{"message":"no"}]}"#);
        assert_eq!(two.text, "DENIED; no");
        assert_eq!(
            ErrorBody::parse(b"").detail(StatusCode::BAD_GATEWAY),
            "Bad Gateway"
        );
    }

    /// Every unsuccessful answer, as the error a caller branches on, in the words people read.
    #[test]
    fn answers_map_to_errors() {
        const DIGEST: &str =
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let repository = repository();
        let manifest_get = |reference: &str| {
            Op::get(
                Kind::ManifestGet,
                &repository,
                format!("/v2/acme/app/manifests/{reference}"),
            )
        };
        let manifest_put = Op::put(
            Kind::ManifestPut,
            &repository,
            "/v2/acme/app/manifests/latest".to_owned(),
            Bytes::new(),
            "application/vnd.oci.image.index.v1+json",
        );
        let blob_get = Op::get(
            Kind::BlobGet,
            &repository,
            format!("/v2/acme/app/blobs/{DIGEST}"),
        );
        let name_unknown = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        let manifest_unknown =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let denied = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let anonymous = client(Credentials::Anonymous);
        let with_password = client(basic());

        // (client, request, status, body, the error's text)
        let tag_get = manifest_get("latest");
        let digest_get = manifest_get(DIGEST);
        let cases: [(&RegistryClient, &Op<'_>, u16, &[u8], String); 9] = [
            (
                &anonymous,
                &tag_get,
                404,
                name_unknown,
                "repository registry.test/acme/app does not exist".to_owned(),
            ),
            (
                &anonymous,
                &blob_get,
                404,
                name_unknown,
                "repository registry.test/acme/app does not exist".to_owned(),
            ),
            (
                &anonymous,
                &tag_get,
                404,
                manifest_unknown,
                "registry.test/acme/app has no tag 'latest'".to_owned(),
            ),
            (
                &anonymous,
                &digest_get,
                404,
                b"",
                format!("registry.test/acme/app has no manifest {DIGEST}"),
            ),
            (
                &anonymous,
                &blob_get,
                404,
                b"",
                format!("registry registry.test answered 404 to GET /v2/acme/app/blobs/{DIGEST}: Not Found"),
            ),
            (
                &anonymous,
                &tag_get,
                403,
                b"",
                "registry registry.test denied pull on acme/app for no credentials".to_owned(),
            ),
            (
                &with_password,
                &manifest_put,
                403,
                denied,
                "registry registry.test denied push on acme/app for user 'bot' (from a test): DENIED: requested access to the resource is denied".to_owned(),
            ),
            (
                &with_password,
                &manifest_put,
                400,
                br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#,
                "registry registry.test answered 400 to PUT /v2/acme/app/manifests/latest: MANIFEST_INVALID: manifest invalid".to_owned(),
            ),
            (
                &anonymous,
                &tag_get,
                500,
                b"",
                "registry registry.test answered 500 to GET /v2/acme/app/manifests/latest: Internal Server Error".to_owned(),
            ),
        ];
        for (client, op, status, body, expected) in cases {
            let status = StatusCode::from_u16(status).expect("status");
            let error = client.answer_error(op, status, ErrorBody::parse(body));
            assert_eq!(error.to_string(), expected, "{status} to {}", op.describe());
        }
        assert!(matches!(
            anonymous.answer_error(&tag_get, StatusCode::NOT_FOUND, ErrorBody::default()),
            RegistryError::ManifestUnknown { ref hint, .. } if hint.is_empty()
        ));
        assert!(matches!(
            anonymous.answer_error(&manifest_put, StatusCode::BAD_GATEWAY, ErrorBody::default()),
            RegistryError::Status { status: 502, .. }
        ));
    }

    #[test]
    fn a_401_after_the_challenge_names_what_is_missing() {
        let repository = repository();
        let pull = Op::head(
            Kind::ManifestHead,
            &repository,
            "/v2/acme/app/manifests/latest".to_owned(),
        );
        let push = Op::put(
            Kind::ManifestPut,
            &repository,
            "/v2/acme/app/manifests/latest".to_owned(),
            Bytes::new(),
            "application/vnd.oci.image.index.v1+json",
        );
        let bearer = Challenge::Bearer {
            realm: "https://auth.test/token".to_owned(),
            service: None,
        };
        // (credentials, challenge answered, request, the error's text)
        let cases = [
            (Credentials::Anonymous, None, &pull, "registry registry.test requires credentials for acme/app; configure [registries.\"registry.test\"] or run docker login registry.test"),
            (Credentials::Anonymous, Some(bearer.clone()), &push, "registry registry.test requires credentials for acme/app; configure [registries.\"registry.test\"] or run docker login registry.test"),
            (basic(), Some(bearer.clone()), &push, "registry registry.test denied push on acme/app for user 'bot' (from a test); the account needs write access to the repository"),
            (basic(), Some(bearer), &pull, "registry registry.test rejected the credentials of user 'bot' (from a test)"),
            (basic(), Some(Challenge::Basic), &push, "registry registry.test rejected the credentials of user 'bot' (from a test)"),
            (basic(), None, &push, "registry registry.test rejected the credentials of user 'bot' (from a test)"),
        ];
        for (credentials, challenge, op, expected) in cases {
            let client = client(credentials);
            lock(&client.auth).challenge = challenge;
            assert_eq!(client.unauthorized(op).to_string(), expected);
        }
    }

    #[test]
    fn a_digest_header_must_be_a_digest() {
        let repository = repository();
        let op = Op::head(
            Kind::BlobHead,
            &repository,
            "/v2/acme/app/blobs/x".to_owned(),
        );
        let client = client(Credentials::Anonymous);
        let mut headers = HeaderMap::new();
        assert_eq!(client.digest_header(&op, &headers), Ok(None));
        headers.insert("docker-content-digest", "md5:abc".parse().expect("value"));
        assert!(matches!(
            client.digest_header(&op, &headers),
            Err(RegistryError::InvalidResponse { .. })
        ));
    }
}
