//! The send loop under every [`Op`]: auth header, one attempt after another, the answer to an
//! auth challenge, and retries of 429 (after its `Retry-After`) and 502–504 (with backoff), the
//! retry decision being the pure [`next_step`]. A write that fails for good after an attempt got
//! a server error is reported as [`RegistryError::AfterUnclearAttempt`].

use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};

use super::answers::header_str;
use super::auth::Challenge;
use super::request::Op;
use super::{RegistryClient, RegistryError};

/// Attempts for answers that say "try again" (429, 502, 503, 504).
const MAX_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` rollbot waits inside one request; longer waits fail with the time.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What to do with an answer (other than a 401) after attempt number `attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Send the request again after this wait.
    Retry(Duration),
    /// Give up: the registry is rate limiting (with the seconds it asked to wait, if it said).
    RateLimited(Option<u64>),
    /// The answer is final (a success or not: the caller maps it).
    Answer,
}

/// The retry decision: 429 waits its `Retry-After` (or 500 ms × attempt) unless that is longer
/// than [`MAX_RETRY_AFTER`]; 502–504 wait 250 ms × attempt; after [`MAX_ATTEMPTS`] a 429 is
/// `RateLimited` and a 5xx is the answer.
fn next_step(status: StatusCode, headers: &HeaderMap, attempt: u32) -> Next {
    let wait = match status.as_u16() {
        429 => match retry_after(headers) {
            Some(wait) if wait > MAX_RETRY_AFTER => return Next::RateLimited(Some(wait.as_secs())),
            Some(wait) => wait,
            None => Duration::from_millis(500 * u64::from(attempt)),
        },
        502..=504 => Duration::from_millis(250 * u64::from(attempt)),
        _ => return Next::Answer,
    };
    if attempt < MAX_ATTEMPTS {
        Next::Retry(wait)
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Next::RateLimited(retry_after(headers).map(|d| d.as_secs()))
    } else {
        Next::Answer
    }
}

/// `Retry-After` in seconds (HTTP dates are treated as "soon").
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    value
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or(Some(Duration::from_secs(1)))
}

impl RegistryClient {
    /// Sends `op`, retrying 429 and 502-504 answers. A write that fails for good after an
    /// attempt got a server error fails as [`RegistryError::AfterUnclearAttempt`], whatever the
    /// last answer was: callers must not take it for a clean refusal.
    ///
    /// # Errors
    /// Transport errors, auth failures (401 after the challenge was answered, token errors),
    /// rate limiting, and the `AfterUnclearAttempt` writes above. Other answers, successful or
    /// not, are returned for the caller to map.
    pub(super) async fn send(&self, op: &Op<'_>) -> Result<Response, RegistryError> {
        let mut unclear = None;
        let result = self.send_attempts(op, &mut unclear).await;
        let writes = op.writes();
        match (result, unclear) {
            (Err(error), Some(status)) if writes && !error.write_may_have_landed() => {
                Err(RegistryError::AfterUnclearAttempt {
                    status,
                    error: Box::new(error),
                })
            }
            (Ok(response), Some(status)) if writes && !response.status().is_success() => {
                let error = self.status_error(op, response).await;
                Err(RegistryError::AfterUnclearAttempt {
                    status,
                    error: Box::new(error),
                })
            }
            (result, _) => result,
        }
    }

    /// The attempts of [`RegistryClient::send`]; `unclear` is set to the status of an attempt
    /// that got a server error before another was made.
    async fn send_attempts(
        &self,
        op: &Op<'_>,
        unclear: &mut Option<u16>,
    ) -> Result<Response, RegistryError> {
        let url = format!("{}{}", self.base, op.path);
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.authorization(op).await?;
            let mut request = self.http.request(op.method.clone(), &url);
            if let Some(accept) = op.accept {
                request = request.header(ACCEPT, HeaderValue::from_static(accept));
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some((body, content_type)) = &op.body {
                request = request
                    .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
                    .body(body.clone());
            }
            // Asked right before each write is sent: a replica paused past its lease wakes up
            // to a refusal here, not to a write. Nor may a write outlive the lease: it gets at
            // most what is left of it.
            if let (true, Some(leadership)) = (op.writes(), &self.leadership) {
                if let Err(not) = leadership.may_write() {
                    return Err(RegistryError::NotLeader {
                        registry: self.host.clone(),
                        request: op.describe(),
                        detail: not.to_string(),
                    });
                }
                if let Some(budget) = leadership.write_budget() {
                    request = request.timeout(budget.min(self.timeout));
                }
            }
            // A read waits for its turn (writes never do), as long as it would wait for an
            // answer; the permit is held until the answer's head is there.
            let turn = if op.writes() {
                None
            } else {
                match tokio::time::timeout(self.timeout, self.reads.acquire()).await {
                    Ok(permit) => permit.ok(),
                    Err(_) => {
                        return Err(RegistryError::Timeout {
                            registry: self.host.clone(),
                            timeout: format!(
                                "{} (waiting for a turn: {} reads were in flight)",
                                humantime::format_duration(self.timeout),
                                super::client::MAX_READS_IN_FLIGHT
                            ),
                        })
                    }
                }
            };
            self.counters.add(op.kind);
            let started = Instant::now();
            let sent = request.send().await;
            drop(turn);
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    self.count_status(0);
                    self.timeline.note(|| op.describe(), 0, started);
                    return Err(self.transport_error(op, &error));
                }
            };
            let status = response.status();
            self.count_status(status.as_u16());
            self.timeline
                .note(|| op.describe(), status.as_u16(), started);
            tracing::debug!(registry = %self.host, request = %op.describe(), status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "Registry answered.");
            self.note_ratelimit(response.headers());

            if status == StatusCode::UNAUTHORIZED {
                if answered_challenge {
                    return Err(self.unauthorized(op));
                }
                answered_challenge = true;
                match header_str(response.headers(), WWW_AUTHENTICATE.as_str())
                    .and_then(Challenge::parse)
                {
                    Some(challenge) => {
                        self.answer_challenge(op, challenge)?;
                        continue;
                    }
                    None => return Err(self.unauthorized(op)),
                }
            }
            match next_step(status, response.headers(), attempt) {
                Next::Retry(wait) => {
                    if status.is_server_error() {
                        *unclear = Some(status.as_u16());
                    }
                    tracing::warn!(registry = %self.host, request = %op.describe(), status = status.as_u16(), wait_ms = wait.as_millis() as u64, "Registry asked to retry.");
                    tokio::time::sleep(wait).await;
                }
                Next::RateLimited(retry_after) => {
                    return Err(RegistryError::RateLimited {
                        registry: self.host.clone(),
                        retry_after,
                    })
                }
                Next::Answer => return Ok(response),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::registry::counts::Kind;
    use crate::registry::testing::{answer, repository, scripted};

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert("retry-after", value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn retry_decisions_by_status_retry_after_and_attempt() {
        let ms = Duration::from_millis;
        // (status, Retry-After, attempt, decision)
        let cases = [
            (200, None, 1, Next::Answer),
            (201, None, 1, Next::Answer),
            (404, None, 1, Next::Answer),
            (500, None, 1, Next::Answer),
            (501, None, 1, Next::Answer),
            (505, None, 1, Next::Answer),
            (502, None, 1, Next::Retry(ms(250))),
            (503, None, 2, Next::Retry(ms(500))),
            (504, None, 1, Next::Retry(ms(250))),
            (504, None, 3, Next::Answer),
            (429, None, 1, Next::Retry(ms(500))),
            (429, None, 2, Next::Retry(ms(1000))),
            (429, None, 3, Next::RateLimited(None)),
            (429, Some("2"), 1, Next::Retry(ms(2000))),
            (429, Some("30"), 2, Next::Retry(ms(30_000))),
            (429, Some("2"), 3, Next::RateLimited(Some(2))),
            // Longer than rollbot waits inside one request: fail at once, with the time.
            (429, Some("31"), 1, Next::RateLimited(Some(31))),
            (429, Some("3600"), 3, Next::RateLimited(Some(3600))),
            // An HTTP date is "soon".
            (
                429,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                1,
                Next::Retry(ms(1000)),
            ),
            // A 503's Retry-After is not read (backoff only).
            (503, Some("20"), 1, Next::Retry(ms(250))),
        ];
        for (status, retry_after, attempt, expected) in cases {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(
                next_step(status, &headers(retry_after), attempt),
                expected,
                "{status} with Retry-After {retry_after:?} after attempt {attempt}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_takes_dates_as_soon() {
        assert_eq!(retry_after(&headers(None)), None);
        assert_eq!(
            retry_after(&headers(Some(" 7 "))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(Some("soon"))),
            Some(Duration::from_secs(1))
        );
    }

    const MANIFEST_INVALID: &[u8] =
        br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#;

    fn put(repository: &crate::domain::model::Repository) -> Op<'_> {
        Op::put(
            Kind::ManifestPut,
            repository,
            "/v2/acme/app/manifests/latest".to_owned(),
            Bytes::from_static(b"{}"),
            "application/vnd.oci.image.manifest.v1+json",
        )
    }

    #[tokio::test]
    async fn reads_wait_for_their_turn_and_writes_never_do() {
        use crate::registry::client::MAX_READS_IN_FLIGHT;
        let (client, seen, gate) = crate::registry::testing::holding().await;
        let client = std::sync::Arc::new(client);
        let send = |method: &'static str, n: usize| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move {
                let repository = repository();
                let path = format!("/v2/acme/app/manifests/t{n}");
                let op = match method {
                    "HEAD" => Op::head(Kind::ManifestHead, &repository, path),
                    _ => Op::put(
                        Kind::ManifestPut,
                        &repository,
                        path,
                        Bytes::from_static(b"{}"),
                        "application/vnd.oci.image.manifest.v1+json",
                    ),
                };
                client.send(&op).await.map(|r| r.status().as_u16())
            })
        };
        let sent = || crate::lock(&seen).clone();
        let until = |count: usize| async move {
            for _ in 0..500 {
                if sent().len() >= count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{count} requests were not sent: {:?}", sent());
        };

        let reads: Vec<_> = (0..MAX_READS_IN_FLIGHT + 4)
            .map(|n| send("HEAD", n))
            .collect();
        until(MAX_READS_IN_FLIGHT).await;
        // With every read's turn taken, a write is still sent at once.
        let write = send("PUT", 999);
        until(MAX_READS_IN_FLIGHT + 1).await;
        assert!(sent().iter().any(|line| line.starts_with("PUT ")));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            sent().len(),
            MAX_READS_IN_FLIGHT + 1,
            "no more reads sent before an answer"
        );

        gate.add_permits(1000);
        for read in reads {
            assert_eq!(read.await.expect("read").expect("answer"), 201);
        }
        assert_eq!(write.await.expect("write").expect("answer"), 201);
        assert_eq!(
            sent().len(),
            MAX_READS_IN_FLIGHT + 5,
            "the waiting reads went"
        );
    }

    #[tokio::test]
    async fn a_write_that_fails_after_a_server_error_may_still_have_landed() {
        let repository = repository();
        // Refused for good after a 504: the 504's attempt may still be applied.
        let (client, _) = scripted(vec![
            answer("504 Gateway Timeout", b""),
            answer("400 Bad Request", MANIFEST_INVALID),
        ])
        .await;
        let error = client.call(&put(&repository)).await.expect_err("refused");
        assert!(
            matches!(&error, RegistryError::AfterUnclearAttempt { status: 504, error } if matches!(**error, RegistryError::Status { status: 400, .. })),
            "{error:?}"
        );
        assert!(error.write_may_have_landed());
        assert_eq!(client.requests().manifest_put, 2);

        // Rate limited for longer than rollbot waits after a 502: the same.
        let (client, _) = scripted(vec![
            answer("502 Bad Gateway", b""),
            answer("429 Too Many Requests\r\nRetry-After: 60", b""),
        ])
        .await;
        let error = client.call(&put(&repository)).await.expect_err("refused");
        assert!(
            matches!(&error, RegistryError::AfterUnclearAttempt { status: 502, error } if matches!(**error, RegistryError::RateLimited { retry_after: Some(60), .. })),
            "{error:?}"
        );

        // A write that succeeds on the retry succeeded.
        let (client, _) = scripted(vec![
            answer("503 Service Unavailable", b""),
            answer("201 Created", b""),
        ])
        .await;
        assert!(client.call(&put(&repository)).await.is_ok());
        assert_eq!(client.requests().manifest_put, 2);

        // Without a server error first, a refusal is only a refusal.
        let (client, _) = scripted(vec![
            answer("429 Too Many Requests\r\nRetry-After: 0", b""),
            answer("400 Bad Request", MANIFEST_INVALID),
        ])
        .await;
        let error = client.call(&put(&repository)).await.expect_err("refused");
        assert!(
            matches!(error, RegistryError::Status { status: 400, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_read_is_retried_and_its_last_answer_is_the_answer() {
        let repository = repository();
        let (client, seen) = scripted(vec![
            answer("503 Service Unavailable", b""),
            answer("503 Service Unavailable", b""),
            answer("503 Service Unavailable", b"down for maintenance"),
        ])
        .await;
        let op = Op::get(
            Kind::TagsList,
            &repository,
            "/v2/acme/app/tags/list?n=1".to_owned(),
        );
        let error = client.call(&op).await.expect_err("unavailable");
        assert_eq!(
            error.to_string(),
            "registry registry.test answered 503 to GET /v2/acme/app/tags/list?n=1: down for maintenance"
        );
        assert_eq!(client.requests().tags_list, MAX_ATTEMPTS);
        assert_eq!(crate::lock(&seen).len(), 3);
        assert_eq!(client.statuses(), vec![(503, 3)]);
    }
}
