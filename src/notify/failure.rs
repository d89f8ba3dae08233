//! How a service's failure is judged, the same way for GitHub and Docker Hub: in delivery
//! (retry, retry after the time the service named, or give up) and at startup (fatal: the start
//! stops, naming the fix; or transient: rollbot keeps going and tries again later).
//!
//! One rule serves both: what retrying can fix (the network, the service's own trouble, a rate
//! limit) is retried in delivery and transient at startup; what it cannot (credentials,
//! permissions, a missing repository) is given up in delivery and fatal at startup.

use std::time::Duration;

/// What delivery and the startup checks need to know of a service's error. Its `Display` is
/// the text people read (in the log, the chat thread, `/readyz`).
pub trait ServiceError: std::fmt::Display {
    /// Whether trying again later can succeed, with no change to rollbot's configuration.
    fn is_retryable(&self) -> bool;

    /// When the service said to try again (a rate limit), if it said.
    fn retry_after(&self) -> Option<Duration>;

    /// This error as the answer to a startup check: transient when retrying can fix it, else
    /// fatal.
    fn at_startup(&self) -> StartupError {
        if self.is_retryable() {
            StartupError::Transient(self.to_string())
        } else {
            StartupError::Fatal(self.to_string())
        }
    }
}

/// What a service's startup check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// rollbot cannot do its job as configured (wrong token, missing repository or category,
    /// Discussions turned off): the start must stop. The text names the fix.
    #[error("{0}")]
    Fatal(String),
    /// The service is unreachable, in trouble or rate limiting: rollbot keeps going, and its
    /// deliveries try again later.
    #[error("{0}")]
    Transient(String),
}

impl StartupError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, StartupError::Fatal(_))
    }

    /// The text for people, whichever kind it is.
    pub fn message(&self) -> &str {
        match self {
            StartupError::Fatal(message) | StartupError::Transient(message) => message,
        }
    }

    /// The same kind of error with its text rewritten (e.g. to say which repository it is
    /// about).
    #[must_use]
    pub fn map_message(self, rewrite: impl FnOnce(String) -> String) -> StartupError {
        match self {
            StartupError::Fatal(message) => StartupError::Fatal(rewrite(message)),
            StartupError::Transient(message) => StartupError::Transient(rewrite(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::dockerhub::HubError;
    use crate::notify::github::GitHubError;

    fn text(s: &str) -> String {
        s.to_owned()
    }

    /// Every variant of both services' errors: fatal at startup exactly when retrying cannot
    /// fix it, with the error's own text.
    #[test]
    fn credentials_and_permissions_are_fatal_at_startup_and_outages_and_rate_limits_transient() {
        let github = [
            (GitHubError::Unauthorized, true),
            (
                GitHubError::Forbidden(text("Resource not accessible")),
                true,
            ),
            (GitHubError::RateLimited(30), false),
            (GitHubError::Unavailable(text("connection refused")), false),
            (GitHubError::Unavailable(text("HTTP 502")), false),
            (GitHubError::Failed(text("HTTP 400: bad")), false),
        ];
        for (error, fatal) in github {
            let answer = error.at_startup();
            assert_eq!(answer.is_fatal(), fatal, "{error:?}");
            assert_eq!(answer.message(), error.to_string(), "{error:?}");
        }
        let hub = [
            (HubError::Unauthorized(text("acmebot")), true),
            (HubError::Forbidden(text("no scope")), true),
            (HubError::NotFound(text("acme/app")), true),
            (HubError::Rejected(text("HTTP 400: bad")), true),
            (HubError::TooLong(text("too long")), true),
            (HubError::RateLimited(30), false),
            (HubError::Unavailable(text("connection refused")), false),
            (
                HubError::Unavailable(text("login answered HTTP 500")),
                false,
            ),
        ];
        for (error, fatal) in hub {
            let answer = error.at_startup();
            assert_eq!(answer.is_fatal(), fatal, "{error:?}");
            assert_eq!(answer.message(), error.to_string(), "{error:?}");
        }
    }

    #[test]
    fn rewriting_the_text_keeps_the_kind() {
        let fatal = StartupError::Fatal(text("no")).map_message(|m| format!("x: {m}"));
        assert_eq!(fatal, StartupError::Fatal(text("x: no")));
        let transient = StartupError::Transient(text("down")).map_message(|m| format!("x: {m}"));
        assert_eq!(transient, StartupError::Transient(text("x: down")));
        assert_eq!(transient.to_string(), "x: down");
    }
}
