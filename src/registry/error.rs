//! [`RegistryError`]: what went wrong talking to a registry, and whether a caller may retry it
//! or must assume a failed write still landed.

use crate::domain::model::{ImageRef, RegistryHost, Repository};

/// What went wrong talking to a registry. Each message names the registry and, where it
/// helps, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        registry: RegistryHost,
        detail: String,
    },
    #[error("registry {registry} did not answer within {timeout}")]
    Timeout {
        registry: RegistryHost,
        timeout: String,
    },
    #[error("registry {registry} requires credentials for {repository}; configure [registries.\"{registry}\"] or run docker login {registry}")]
    AuthRequired {
        registry: RegistryHost,
        repository: Repository,
    },
    #[error("registry {registry} rejected the credentials of {who}")]
    CredentialsRejected { registry: RegistryHost, who: String },
    #[error("registry {registry} denied {action} on {repository} for {who}{detail}")]
    Denied {
        registry: RegistryHost,
        repository: Repository,
        action: &'static str,
        who: String,
        detail: String,
    },
    #[error("repository {image} does not exist")]
    RepositoryUnknown { image: ImageRef },
    #[error("{image} has no {what}{hint}")]
    ManifestUnknown {
        image: ImageRef,
        what: String,
        /// e.g. ` (its tags include: latest, v1, v2)`, or empty.
        hint: String,
    },
    #[error("registry {registry} is rate limiting requests{}", retry_after.map(|s| format!("; retry in {s} s")).unwrap_or_default())]
    RateLimited {
        registry: RegistryHost,
        retry_after: Option<u64>,
    },
    #[error("registry {registry} answered {status} to {request}: {detail}")]
    Status {
        registry: RegistryHost,
        request: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry} sent an unusable answer to {request}: {detail}")]
    InvalidResponse {
        registry: RegistryHost,
        request: String,
        detail: String,
    },
    #[error("cannot load credentials for {registry}: {detail}")]
    Credentials {
        registry: RegistryHost,
        detail: String,
    },
    #[error("cannot set up an HTTP client for {registry}: {detail}")]
    Client {
        registry: RegistryHost,
        detail: String,
    },
    /// Not sent: this replica does not lead (any more), so it writes nothing.
    #[error("{request} was not sent to {registry}: {detail}")]
    NotLeader {
        registry: RegistryHost,
        request: String,
        detail: String,
    },
    /// A write failed for good after an earlier attempt got a server error: that attempt may
    /// still have been applied (a gateway's 504 says nothing about the registry behind it).
    #[error("{error} (an earlier attempt was answered {status} and may still have been applied)")]
    AfterUnclearAttempt {
        status: u16,
        error: Box<RegistryError>,
    },
}

impl RegistryError {
    /// Worth trying again later (the registry or the network is busy or briefly down).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::RateLimited { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A write that failed this way may still have happened (or happen later): the request may
    /// have reached the registry and its answer been lost (a timeout, a dropped connection), or
    /// the registry failed after storing (a server error, an answer it could not explain).
    /// Refusals (4xx, credentials, rate limits) mean the write did not happen.
    pub fn write_may_have_landed(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::InvalidResponse { .. }
            | RegistryError::AfterUnclearAttempt { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_and_maybe_landed_by_kind() {
        let registry = RegistryHost::parse("registry.test").expect("host");
        let repository = Repository::parse("acme/app").expect("repository");
        let status = |status: u16| RegistryError::Status {
            registry: registry.clone(),
            request: "PUT /v2/acme/app/manifests/latest".to_owned(),
            status,
            detail: String::new(),
        };
        // (error, is_retryable, write_may_have_landed)
        let cases = [
            (
                RegistryError::Unreachable {
                    registry: registry.clone(),
                    detail: String::new(),
                },
                true,
                true,
            ),
            (
                RegistryError::Timeout {
                    registry: registry.clone(),
                    timeout: "30s".to_owned(),
                },
                true,
                true,
            ),
            (
                RegistryError::RateLimited {
                    registry: registry.clone(),
                    retry_after: Some(60),
                },
                true,
                false,
            ),
            (status(500), true, true),
            (status(503), true, true),
            (status(400), false, false),
            (status(404), false, false),
            (
                RegistryError::InvalidResponse {
                    registry: registry.clone(),
                    request: String::new(),
                    detail: String::new(),
                },
                false,
                true,
            ),
            (
                RegistryError::AfterUnclearAttempt {
                    status: 504,
                    error: Box::new(status(400)),
                },
                false,
                true,
            ),
            (
                RegistryError::AuthRequired {
                    registry: registry.clone(),
                    repository: repository.clone(),
                },
                false,
                false,
            ),
            (
                RegistryError::Denied {
                    registry: registry.clone(),
                    repository,
                    action: "push",
                    who: "no credentials".to_owned(),
                    detail: String::new(),
                },
                false,
                false,
            ),
        ];
        for (error, retryable, landed) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
            assert_eq!(error.write_may_have_landed(), landed, "{error:?}");
        }
    }

    #[test]
    fn a_write_after_an_unclear_attempt_says_so() {
        let error = RegistryError::AfterUnclearAttempt {
            status: 504,
            error: Box::new(RegistryError::RateLimited {
                registry: RegistryHost::parse("registry.test").expect("host"),
                retry_after: None,
            }),
        };
        assert_eq!(
            error.to_string(),
            "registry registry.test is rate limiting requests (an earlier attempt was answered 504 and may still have been applied)"
        );
    }
}
