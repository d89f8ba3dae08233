//! The client side of registry auth: the `Authorization` header for each attempt from the
//! challenge the registry last sent (Basic, or a Bearer token fetched from its realm and cached
//! per scope), and what a new challenge changes.

use std::time::Instant;

use base64::Engine as _;
use reqwest::StatusCode;

use super::answers::ErrorBody;
use super::auth::{Challenge, Credentials, Token, TokenAnswer};
use super::counts::Kind;
use super::request::Op;
use super::{RegistryClient, RegistryError};
use crate::domain::model::Repository;
use crate::error_chain;
use crate::lock;

impl RegistryClient {
    /// The Authorization header for `op` given what the registry asked for so far.
    ///
    /// # Errors
    /// A token that cannot be fetched (see [`RegistryClient::token`]).
    pub(super) async fn authorization(&self, op: &Op<'_>) -> Result<Option<String>, RegistryError> {
        let challenge = lock(&self.auth).challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic_header()),
            Some(Challenge::Bearer { realm, service }) => {
                let token = self.token(op, &realm, service.as_deref()).await?;
                Ok(Some(format!("Bearer {}", token.value.expose())))
            }
        }
    }

    /// Fetches (and caches) a push token for `repository` when the registry asked for bearer
    /// tokens, so that the writes that follow carry one at once: no token round trip between
    /// a compare-and-swap read and its write. Nothing happens with Basic auth, without auth,
    /// or while the registry has not challenged yet. A failure is left for the write itself to
    /// meet and report.
    pub async fn prepare_push(&self, repository: &Repository) {
        let challenge = lock(&self.auth).challenge.clone();
        if let Some(Challenge::Bearer { realm, service }) = challenge {
            let op = Op::put(
                Kind::ManifestPut,
                repository,
                format!("/v2/{repository}/manifests/"),
                bytes::Bytes::new(),
                "application/octet-stream",
            );
            if let Err(error) = self.token(&op, &realm, service.as_deref()).await {
                tracing::debug!(registry = %self.host, %error, "No push token ahead of the writes.");
            }
        }
    }

    fn basic_header(&self) -> Option<String> {
        match &self.credentials {
            Credentials::Anonymous => None,
            Credentials::Basic {
                username, password, ..
            } => {
                let pair = format!("{username}:{}", password.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        }
    }

    /// Takes `challenge` as what the registry asks for from now on.
    ///
    /// # Errors
    /// `AuthRequired` for a Basic challenge when there are no credentials to answer it with.
    pub(super) fn answer_challenge(
        &self,
        op: &Op<'_>,
        challenge: Challenge,
    ) -> Result<(), RegistryError> {
        if challenge == Challenge::Basic && self.credentials == Credentials::Anonymous {
            return Err(RegistryError::AuthRequired {
                registry: self.host.clone(),
                repository: op.repository.clone(),
            });
        }
        let mut state = lock(&self.auth);
        // A new challenge (or an expired token) invalidates the cached tokens.
        state.tokens.clear();
        state.challenge = Some(challenge);
        Ok(())
    }

    /// A token for `op`'s repository with the rights it needs: a cached one that has not
    /// expired (a push token also allows pulls), else one fetched from `realm` (counted as a
    /// request) with the client's credentials, if any.
    ///
    /// # Errors
    /// A realm that is not a URL, or not HTTPS for an HTTPS registry; a token service that
    /// cannot be reached, refuses the credentials or sends no token.
    async fn token(
        &self,
        op: &Op<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Token, RegistryError> {
        // A mount also reads the repository it mounts from: the token names both scopes
        // (space-separated as the cache key, one `scope` parameter each in the request).
        let source = op
            .also_pulls
            .map(|from| format!(" repository:{from}:pull"))
            .unwrap_or_default();
        let pull = format!("repository:{}:pull{source}", op.repository);
        let push = format!("repository:{}:pull,push{source}", op.repository);
        {
            let state = lock(&self.auth);
            let now = Instant::now();
            let usable = |scope: &str| state.tokens.get(scope).filter(|t| t.expires > now).cloned();
            // A push token also allows pulls.
            if let Some(token) =
                usable(&push).or_else(|| if op.push { None } else { usable(&pull) })
            {
                return Ok(token);
            }
        }
        let scope = if op.push { push } else { pull };
        let realm_url = reqwest::Url::parse(realm).map_err(|e| {
            self.invalid(op, format!("the token realm '{realm}' is not a URL: {e}"))
        })?;
        if realm_url.scheme() != "https" && !self.insecure {
            return Err(self.invalid(
                op,
                format!(
                    "the token realm {realm} is not HTTPS; rollbot does not send credentials there"
                ),
            ));
        }
        let mut request = self.http.get(realm_url);
        for one in scope.split(' ') {
            request = request.query(&[("scope", one)]);
        }
        if let Some(service) = service {
            request = request.query(&[("service", service)]);
        }
        if let Credentials::Basic {
            username, password, ..
        } = &self.credentials
        {
            request = request.basic_auth(username, Some(password.expose()));
        }
        self.counters.add(Kind::Token);
        let token_op = format!("GET {realm}");
        let unreachable = |error: reqwest::Error| RegistryError::Unreachable {
            registry: self.host.clone(),
            detail: format!("token service {realm}: {}", error_chain(&error)),
        };
        let sent = Instant::now();
        let response = request.send().await;
        let status = response.as_ref().map_or(0, |r| r.status().as_u16());
        self.timeline.note(|| token_op.clone(), status, sent);
        let response = response.map_err(unreachable)?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(match self.credentials {
                    Credentials::Anonymous => RegistryError::AuthRequired {
                        registry: self.host.clone(),
                        repository: op.repository.clone(),
                    },
                    Credentials::Basic { .. } => RegistryError::CredentialsRejected {
                        registry: self.host.clone(),
                        who: self.credentials.describe(),
                    },
                });
            }
            status => {
                return Err(RegistryError::Status {
                    registry: self.host.clone(),
                    request: token_op,
                    status: status.as_u16(),
                    detail: ErrorBody::read(response).await.detail(status),
                });
            }
        }
        let body = response.bytes().await.map_err(unreachable)?;
        let invalid = |detail: String| RegistryError::InvalidResponse {
            registry: self.host.clone(),
            request: token_op.clone(),
            detail,
        };
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("not a token answer: {e}")))?;
        let token = answer
            .into_token(Instant::now())
            .ok_or_else(|| invalid("the answer has no token".to_owned()))?;
        lock(&self.auth).tokens.insert(scope, token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{answer, basic, client, repository, scripted};

    #[tokio::test]
    async fn a_push_token_is_fetched_ahead_of_the_writes_only_for_bearer_registries() {
        let token = answer(
            "200 OK\r\nContent-Type: application/json",
            br#"{"token":"push-token","expires_in":300}"#,
        );
        let (client, seen) = scripted(vec![token]).await;
        // No challenge yet: nothing to fetch.
        client.prepare_push(&repository()).await;
        assert!(lock(&seen).is_empty());
        lock(&client.auth).challenge = Some(Challenge::Bearer {
            realm: format!("{}/token", client.base),
            service: Some("registry.test".to_owned()),
        });
        client.prepare_push(&repository()).await;
        let seen = lock(&seen).clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with("GET /token?scope=repository%3Aacme%2Fapp%3Apull%2Cpush"),
            "{seen:?}"
        );
        let state = lock(&client.auth);
        assert!(state.tokens.contains_key("repository:acme/app:pull,push"));
    }

    #[test]
    fn a_basic_challenge_needs_credentials_and_a_new_challenge_drops_tokens() {
        let repository = repository();
        let op = Op::head(
            Kind::ManifestHead,
            &repository,
            "/v2/acme/app/manifests/latest".to_owned(),
        );
        let anonymous = client(Credentials::Anonymous);
        assert!(matches!(
            anonymous.answer_challenge(&op, Challenge::Basic),
            Err(RegistryError::AuthRequired { .. })
        ));
        assert_eq!(lock(&anonymous.auth).challenge, None);
        assert_eq!(anonymous.basic_header(), None);

        let with_password = client(basic());
        lock(&with_password.auth).tokens.insert(
            "repository:acme/app:pull".to_owned(),
            Token {
                value: crate::secret::Secret::new("t"),
                expires: Instant::now() + std::time::Duration::from_secs(60),
            },
        );
        with_password
            .answer_challenge(&op, Challenge::Basic)
            .expect("answered");
        let state = lock(&with_password.auth);
        assert_eq!(state.challenge, Some(Challenge::Basic));
        assert!(state.tokens.is_empty());
        drop(state);
        // base64("bot:s3cret")
        assert_eq!(
            with_password.basic_header().as_deref(),
            Some("Basic Ym90OnMzY3JldA==")
        );
    }
}
