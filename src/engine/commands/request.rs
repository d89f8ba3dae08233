//! `/rollback IMAGE[@DIGEST|:TAG] [reason]`: the allowlist, one rollback per image, a rule that
//! someone could satisfy, then planning in a task; the plan becomes a record waiting for approval.

use super::super::*;

impl Engine {
    /// The registry client of an allowlisted image, with the entry.
    pub(in crate::engine) fn with_registry(
        &self,
        entry: ImageSettings,
    ) -> Result<(ImageSettings, Arc<RegistryClient>), Refusal> {
        self.registries
            .get(&entry.image.registry)
            .map(|registry| (entry, registry))
            .map_err(|error| Refusal::Registry(error.to_string()))
    }

    /// The allowlist entry for an image as typed.
    pub(in crate::engine) fn allowlisted(
        &self,
        name: &ImageName,
    ) -> Result<&ImageSettings, Refusal> {
        let entry = match name {
            ImageName::Alias(alias) => self.settings.images.get(alias),
            ImageName::Full(image) => self.settings.image_entry(image),
        };
        entry.ok_or_else(|| Refusal::NotAllowlisted {
            name: name.to_string(),
            known: self.settings.images.keys().cloned().collect(),
        })
    }

    pub(in crate::engine) async fn request(
        &mut self,
        actor: Actor,
        channel: ChannelRef,
        name: ImageName,
        target: Option<Reference>,
        reason: Option<String>,
        reply: oneshot::Sender<Answer>,
    ) -> Option<(oneshot::Sender<Answer>, Answer)> {
        let refusal = match self.allowlisted(&name) {
            Err(message) => Err(message),
            Ok(entry) => {
                let rule = self.settings.approval_rule(entry);
                match (
                    self.active.values().find(|r| r.image == entry.image),
                    rule.unapprovable(Some(&actor)),
                ) {
                    (Some(active), _) => Err(Refusal::InProgress {
                        alias: entry.alias.clone(),
                        id: active.id,
                        state: active.state,
                        requester: active.requester.name.clone(),
                    }),
                    _ if self.planning.contains(&entry.image) => Err(Refusal::BeingPlanned {
                        alias: entry.alias.clone(),
                    }),
                    (None, Some(why)) => Err(Refusal::Unapprovable {
                        alias: entry.alias.clone(),
                        why,
                    }),
                    (None, None) => self.with_registry(entry.clone()),
                }
            }
        };
        let (entry, registry) = match refusal {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(&actor, None, "request", why).await)),
        };
        self.planning.insert(entry.image.clone());
        let tags = self.settings.floating_tags(Some(&entry), &[]);
        let request = PendingRequest {
            actor,
            channel,
            image: entry.image.clone(),
            alias: entry.alias.clone(),
            reason,
            requested_target: target.as_ref().map_or_else(
                || "the previous good build".to_owned(),
                Reference::to_string,
            ),
        };
        let internal = self.internal_tx.clone();
        self.tasks.spawn(async move {
            let result = catch_panic(plan_request(&registry, &request.image, tags, target))
                .await
                .unwrap_or_else(|panic| Err(PlanFailure::Panic(panic)));
            let _ = internal.send(Internal::Planned {
                request: Box::new(request),
                result: Box::new(result),
                reply,
            });
        });
        None
    }

    pub(in crate::engine) async fn planned(
        &mut self,
        request: PendingRequest,
        result: Result<Planned, PlanFailure>,
    ) -> Answer {
        let now = self.now();
        let planned = match result {
            Ok(planned) => planned,
            Err(error) => {
                self.audit(AuditEntry::new(
                    now,
                    None,
                    Some(&request.actor),
                    "request_refused",
                    json!({ "image": request.image.to_string(), "why": error.to_string() }),
                ))
                .await;
                return Refusal::CannotPlan {
                    alias: request.alias,
                    error: error.to_string(),
                }
                .into();
            }
        };
        let plan = planned.plan;
        if plan.is_noop() {
            return Answer::NothingToDo {
                alias: request.alias,
                target: plan.target.digest,
            };
        }
        let Some(entry) = self.settings.images.get(&request.alias).cloned() else {
            let why = Refusal::LeftAllowlist {
                alias: request.alias.clone(),
            };
            return self.refuse(&request.actor, None, "request", why).await;
        };
        let rule = self.settings.approval_rule(&entry);
        let mut record = RollbackRecord {
            id: RollbackId(0),
            image: request.image.clone(),
            alias: request.alias.clone(),
            channel: request.channel.clone(),
            requester: request.actor.clone(),
            reason: request.reason.clone(),
            requested_target: request.requested_target.clone(),
            target_source: planned.target_source,
            target: plan.target_report(),
            tags: plan.tags.clone(),
            state: State::Requested,
            created_at: now,
            expires_at: now.plus(rule.expiry),
            updated_at: now,
            approved_at: None,
            finished_at: None,
            votes: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            tags_now: Vec::new(),
            error: None,
            status_ref: None,
        };
        let audit = AuditEntry::new(
            now,
            None,
            Some(&request.actor),
            "requested",
            json!({
                "image": request.image.to_string(),
                "target": plan.target.digest.to_string(),
                "tags": plan.tags,
                "reason": request.reason,
            }),
        );
        match self.store.create(&mut record, audit).await {
            Ok(()) => {}
            Err(StoreError::ActiveExists { image }) => {
                let why = Refusal::InProgressStored { image };
                return self.refuse(&request.actor, None, "request", why).await;
            }
            Err(error) => {
                return Refusal::NotSaved {
                    what: "the request",
                    error: error.to_string(),
                }
                .into()
            }
        }
        tracing::info!(rollback_id = %record.id, image = %record.image, target = %record.target.digest, requester = %record.requester.id, "Rollback requested.");
        self.active.insert(record.id, record.clone());
        self.update_gauges();
        let answer = Answer::Requested {
            id: record.id,
            alias: record.alias.clone(),
            tags: record.tags.iter().map(|t| t.tag.clone()).collect(),
            target: record.target.digest.clone(),
            required: rule.required,
            approvers: rule.approvers,
            expires_at: record.expires_at,
        };
        self.emit(Event {
            kind: EventKind::Requested,
            channel: record.channel.clone(),
            rollback: Some(record),
        });
        answer
    }
}

/// Why a request could not be planned. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub(in crate::engine) enum PlanFailure {
    /// No target was named and none can be chosen safely.
    #[error("{}{}", refusal.reason, refusal.suggestion.as_ref().map(|s| format!("; the newest complete build before it is {s} (name it: /rollback {image}@{s})")).unwrap_or_default())]
    Target {
        image: ImageRef,
        refusal: Box<pipeline::TargetRefusal>,
    },
    #[error(transparent)]
    Plan(pipeline::PlanError),
    #[error("internal error while planning: {0}")]
    Panic(String),
}

/// Plans a request: chooses the target from the rollback manifests when none was named.
pub(in crate::engine) async fn plan_request(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: Vec<Tag>,
    target: Option<Reference>,
) -> Result<Planned, PlanFailure> {
    let (target, expect_from, target_source, prefetched) = match target {
        Some(target) => (target, Vec::new(), None, None),
        None => match pipeline::default_target(registry, image, &tags).await {
            Ok(chosen) => (
                Reference::Digest(chosen.digest),
                chosen.expect_from,
                Some(chosen.source),
                chosen.prefetched,
            ),
            Err(refusal) => {
                return Err(PlanFailure::Target {
                    image: image.clone(),
                    refusal: Box::new(refusal),
                })
            }
        },
    };
    let request = RollbackRequest {
        image: image.clone(),
        target,
        tags,
        expect_from,
        target_source: target_source.clone(),
        prefetched,
    };
    let plan = pipeline::plan(registry, &request)
        .await
        .map_err(PlanFailure::Plan)?;
    Ok(Planned {
        plan,
        target_source,
    })
}
