//! Refusing: the per-user rate limit and every refusal written to the audit log with its reason.

use super::*;

impl Engine {
    /// The per-user limit on commands: `Some(refusal)` (audited) when `actor` is over it.
    pub(in crate::engine) async fn rate_limited(
        &self,
        actor: &Actor,
        command_name: &str,
    ) -> Option<Answer> {
        let not_until = self.per_user.check_key(&actor.id).err()?;
        let wait = retry_in(&not_until);
        self.metrics.rate_limited();
        self.audit(AuditEntry::new(
            self.now(),
            None,
            Some(actor),
            "rate_limited",
            json!({ "command": command_name }),
        ))
        .await;
        Some(
            Refusal::TooFast {
                limit: self.settings.daemon.limits.commands_per_minute,
                retry_in: wait,
            }
            .into(),
        )
    }

    /// Refuses a command: the refusal and its reason go to the audit log, the refusal to the
    /// person.
    pub(in crate::engine) async fn refuse(
        &self,
        actor: &Actor,
        rollback: Option<RollbackId>,
        command: &'static str,
        why: Refusal,
    ) -> Answer {
        audit_refusal(&self.store, self.now(), actor, rollback, command, &why).await;
        Answer::Refused(why)
    }
}

/// Writes a `refused` audit entry: who was refused what, and why.
pub(in crate::engine) async fn audit_refusal(
    store: &Store,
    at: Timestamp,
    actor: &Actor,
    rollback: Option<RollbackId>,
    command: &str,
    why: &Refusal,
) {
    let entry = AuditEntry::new(
        at,
        rollback,
        Some(actor),
        "refused",
        json!({ "command": command, "why": why.to_string() }),
    );
    if let Err(error) = store.audit(&entry).await {
        tracing::error!(%error, "Audit entry could not be written.");
    }
}

/// How long until a rate limiter that said no allows again.
fn retry_in(
    not_until: &governor::NotUntil<<DefaultClock as governor::clock::Clock>::Instant>,
) -> Duration {
    not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
}
