//! `/rollback IMAGE[@DIGEST|:TAG] [reason]` and `/rollback drill IMAGE [reason]`: the allowlist,
//! one rollback (and, apart from it, one drill) per image, a rule that someone could satisfy, then
//! planning in a task; the plan becomes a record waiting for approval. A drill is planned on the
//! production image exactly like the rollback it rehearses (only reading it).

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
        wanted: Wanted,
        reason: Option<String>,
        reply: oneshot::Sender<Answer>,
    ) -> Option<(oneshot::Sender<Answer>, Answer)> {
        let (target, drill) = match wanted {
            Wanted::Rollback { target } => (target, false),
            Wanted::Drill => (None, true),
        };
        let command = if drill { "drill" } else { "request" };
        let refusal = match self.allowlisted(&name) {
            Err(message) => Err(message),
            Ok(entry) => {
                let rule = self.settings.approval_rule(entry);
                // A drill and a rollback of one image do not hold each other up.
                let active = self
                    .active
                    .values()
                    .find(|r| r.image == entry.image && r.drill == drill);
                let scratch = match drill {
                    true => self.settings.drill_image(&entry.image, Some(entry)).err(),
                    false => None,
                };
                match (active, rule.unapprovable(Some(&actor))) {
                    (Some(active), _) if drill => Err(Refusal::DrillInProgress {
                        alias: entry.alias.clone(),
                        id: active.id,
                        state: active.state,
                    }),
                    (Some(active), _) => Err(Refusal::InProgress {
                        alias: entry.alias.clone(),
                        id: active.id,
                        state: active.state,
                        requester: active.requester.name.clone(),
                    }),
                    _ if self.planning.contains(&(entry.image.clone(), drill)) => {
                        Err(Refusal::BeingPlanned {
                            alias: entry.alias.clone(),
                            what: command,
                        })
                    }
                    (None, Some(why)) => Err(Refusal::Unapprovable {
                        alias: entry.alias.clone(),
                        why,
                    }),
                    (None, None) => match scratch {
                        Some(error) => Err(Refusal::CannotDrill {
                            alias: entry.alias.clone(),
                            error,
                        }),
                        None => self.with_registry(entry.clone()),
                    },
                }
            }
        };
        let (entry, registry) = match refusal {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(&actor, None, command, why).await)),
        };
        self.planning.insert((entry.image.clone(), drill));
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
            drill,
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
                let mut detail =
                    json!({ "image": request.image.to_string(), "why": error.to_string() });
                if request.drill {
                    detail["drill"] = json!(true);
                }
                self.audit(AuditEntry::new(
                    now,
                    None,
                    Some(&request.actor),
                    "request_refused",
                    detail,
                ))
                .await;
                let (alias, error) = (request.alias, error.to_string());
                return match request.drill {
                    true => Refusal::CannotDrill { alias, error },
                    false => Refusal::CannotPlan { alias, error },
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
            drill: request.drill,
        };
        let mut detail = json!({
            "image": request.image.to_string(),
            "target": plan.target.digest.to_string(),
            "tags": plan.tags,
            "reason": request.reason,
        });
        if request.drill {
            detail["drill"] = json!(true);
        }
        let audit = AuditEntry::new(now, None, Some(&request.actor), "requested", detail);
        match self.store.create(&mut record, audit).await {
            Ok(()) => self.unpersisted.reached(),
            Err(StoreError::ActiveExists { image, drill }) => {
                let why = Refusal::InProgressStored { image, drill };
                let command = if drill { "drill" } else { "request" };
                return self.refuse(&request.actor, None, command, why).await;
            }
            Err(error) => {
                return Refusal::NotSaved {
                    what: "the request",
                    error: error.to_string(),
                }
                .into()
            }
        }
        tracing::info!(rollback_id = %record.id, image = %record.image, target = %record.target.digest, requester = %record.requester.id, drill = record.drill, "Rollback requested.");
        self.active.insert(record.id, record.clone());
        if !record.drill {
            let read = pipeline::Prefetched {
                manifest: plan.target.clone(),
                asked_at: plan.target_read_at,
            };
            self.target_manifests.insert(record.id, read);
        }
        self.update_gauges();
        let answer = Answer::Requested {
            id: record.id,
            alias: record.alias.clone(),
            tags: record.tags.iter().map(|t| t.tag.clone()).collect(),
            target: record.target.digest.clone(),
            required: rule.required,
            approvers: rule.approvers,
            expires_at: record.expires_at,
            drill: record.drill,
        };
        self.emit(Event {
            kind: EventKind::Requested,
            channel: record.channel.clone(),
            rollback: Some(record),
        });
        answer
    }
}

/// What a request asks for: a rollback (to a named target or the default one), or a drill of
/// the rollback to the default target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::engine) enum Wanted {
    Rollback { target: Option<Reference> },
    Drill,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::PlanFailure;
    use crate::domain::policy::{Approver, Decision};
    use crate::domain::record::AuditEntry;
    use crate::domain::rollback::State;
    use crate::engine::testing::{actor, pending, planned, Harness, EXPIRY, START};
    use crate::engine::{Answer, EventKind, Refusal};

    const KNOWN: [&str; 6] = ["api", "app", "locked", "nobody", "solo", "web"];

    #[tokio::test]
    async fn images_not_on_the_allowlist_are_refused_naming_the_known_aliases() {
        let mut h = Harness::new().await;
        let other = format!("{}/acme/other", h.host);
        // Unknown aliases and full names that no entry has.
        for name in ["nope", other.as_str(), "docker.io/acme/app"] {
            let answer = h.request(&actor("alice"), name).await.now();

            let refusal = Refusal::NotAllowlisted {
                name: name.to_owned(),
                known: KNOWN.map(str::to_owned).to_vec(),
            };
            assert_eq!(answer, refusal.clone().into(), "{name}");
            let why = refusal.to_string();
            assert!(
                why.ends_with("(api, app, locked, nobody, solo, web)"),
                "{why}"
            );
            assert_eq!(
                h.refusals().await.last(),
                Some(&("request".to_owned(), why))
            );
        }
        assert!(h.engine.planning.is_empty());
    }

    #[tokio::test]
    async fn an_allowlisted_image_is_found_by_alias_or_by_full_name() {
        for by_full_name in [false, true] {
            let mut h = Harness::new().await;
            let name = if by_full_name {
                format!("{}/acme/app", h.host)
            } else {
                "app".to_owned()
            };

            let reply = h.request(&actor("alice"), &name).await;

            assert!(reply.is_later(), "{name}: planning started");
            assert!(h
                .engine
                .planning
                .contains(&(h.engine.settings.images["app"].image.clone(), false)));
            assert!(h.refusals().await.is_empty());
        }
    }

    #[tokio::test]
    async fn one_rollback_per_image_at_a_time() {
        let mut h = Harness::new().await;
        let waiting = h.requested("app", &actor("alice")).await.id;
        let running = h.requested("api", &actor("alice")).await.id;
        h.engine
            .vote(&actor("bob"), running, Decision::Approve, None)
            .await;
        let app_by_name = format!("{}/acme/app", h.host);
        // (image as typed, the rollback in progress, its state)
        let cases = [
            ("app", "app", waiting, State::Requested),
            (app_by_name.as_str(), "app", waiting, State::Requested),
            ("api", "api", running, State::Retagging),
        ];
        for (name, alias, id, state) in cases {
            let answer = h.request(&actor("carol"), name).await.now();

            let refusal = Refusal::InProgress {
                alias: alias.to_owned(),
                id,
                state,
                requester: "Alice".to_owned(),
            };
            assert_eq!(answer, refusal.clone().into(), "{name}");
            assert_eq!(
                h.refusals().await.last(),
                Some(&("request".to_owned(), refusal.to_string()))
            );
        }
        assert!(h.engine.planning.is_empty());
    }

    #[tokio::test]
    async fn a_request_being_planned_holds_its_image() {
        let mut h = Harness::new().await;
        assert!(h.request(&actor("alice"), "app").await.is_later());

        let answer = h.request(&actor("carol"), "app").await.now();

        let refusal = Refusal::BeingPlanned {
            alias: "app".to_owned(),
            what: "request",
        };
        assert_eq!(answer, refusal.clone().into());
        assert_eq!(
            h.refusals().await,
            [("request".to_owned(), refusal.to_string())]
        );
        assert!(
            h.request(&actor("carol"), "api").await.is_later(),
            "another image is not held"
        );
    }

    #[tokio::test]
    async fn a_drill_and_a_rollback_of_one_image_do_not_hold_each_other_up() {
        let mut h = Harness::new().await;
        // Being planned: each holds the image for its own kind only.
        assert!(h.drill(&actor("alice"), "app").await.is_later());
        assert!(h.request(&actor("bob"), "app").await.is_later());
        let answer = h.drill(&actor("carol"), "app").await.now();
        let refusal = Refusal::BeingPlanned {
            alias: "app".to_owned(),
            what: "drill",
        };
        assert_eq!(answer, refusal.clone().into());
        assert_eq!(
            refusal.to_string(),
            "app already has a drill being planned; one at a time"
        );
        assert_eq!(
            h.refusals().await,
            [("drill".to_owned(), refusal.to_string())]
        );

        // Planned: the drill is a record with the flag, stored beside a real rollback.
        let mut h = Harness::new().await;
        let image = h.engine.settings.images["app"].image.clone();
        let rollback = h.requested("app", &actor("bob")).await.id;
        let mut request = pending("app", &image, &actor("alice"));
        request.drill = true;
        let answer = h.engine.planned(request, Ok(planned(&image, false))).await;
        let Answer::Requested {
            id, drill: true, ..
        } = answer
        else {
            panic!("expected a drill request, got {answer:?}");
        };
        assert_ne!(id, rollback);
        assert!(h.stored(id).await.drill && !h.stored(rollback).await.drill);
        let requested = h.audited("requested").await;
        assert_eq!(requested[1].detail["drill"], true);
        assert_eq!(requested[0].detail.get("drill"), None);
        assert_eq!(h.event_kinds(), [EventKind::Requested]);

        // A second drill is refused while one is active; a second rollback as before.
        let answer = h.drill(&actor("carol"), "app").await.now();
        assert_eq!(
            answer,
            Refusal::DrillInProgress {
                alias: "app".to_owned(),
                id,
                state: State::Requested,
            }
            .into()
        );
        let answer = h.request(&actor("carol"), "app").await.now();
        assert!(
            matches!(answer, Answer::Refused(Refusal::InProgress { id, .. }) if id == rollback),
            "{answer:?}"
        );
        assert!(h.engine.planning.is_empty());
    }

    #[tokio::test]
    async fn a_request_nobody_could_approve_is_refused() {
        // (image, requester, why)
        let cases = [
            (
                "nobody",
                "alice",
                "no approvers are configured, so nobody can approve it",
            ),
            (
                "solo",
                "alice",
                "1 approvals are required but only 0 people could ever approve (the requester cannot approve their own request)",
            ),
        ];
        for (alias, requester, why) in cases {
            let mut h = Harness::new().await;

            let answer = h.request(&actor(requester), alias).await.now();

            let refusal = Refusal::Unapprovable {
                alias: alias.to_owned(),
                why: why.to_owned(),
            };
            assert_eq!(answer, refusal.clone().into(), "{alias}");
            assert_eq!(
                h.refusals().await,
                [("request".to_owned(), refusal.to_string())]
            );
            assert!(h.engine.planning.is_empty());
        }
        // Someone else's request of solo can be approved (by alice).
        let mut h = Harness::new().await;
        assert!(h.request(&actor("bob"), "solo").await.is_later());
    }

    #[tokio::test]
    async fn a_request_whose_registry_client_cannot_be_built_is_refused() {
        let mut h = Harness::new().await;

        let answer = h.request(&actor("alice"), "locked").await.now();

        let Answer::Refused(Refusal::Registry(error)) = &answer else {
            panic!("expected a registry refusal, got {answer:?}");
        };
        assert!(
            error.contains("docker credentials file /nonexistent/rollbot-test/docker-config.json does not exist"),
            "{error}"
        );
        assert_eq!(h.refusals().await, [("request".to_owned(), error.clone())]);
        assert!(h.engine.planning.is_empty());
    }

    #[tokio::test]
    async fn a_request_whose_plan_fails_is_refused_audited_and_frees_its_image() {
        let mut h = Harness::new().await;
        let reply = h.request(&actor("alice"), "app").await;

        // Planning asks the registry, which does not answer.
        let report = h.next_internal().await;
        assert!(matches!(report, crate::engine::Internal::Planned { .. }));
        h.engine.internal(report).await;

        let answer = reply.later().await;
        let Answer::Refused(Refusal::CannotPlan { alias, error }) = &answer else {
            panic!("expected a planning failure, got {answer:?}");
        };
        assert_eq!(alias, "app");
        let refused = h.audited("request_refused").await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].actor, Some(actor("alice")));
        assert_eq!(
            refused[0].detail,
            json!({ "image": format!("{}/acme/app", h.host), "why": error })
        );
        assert!(h.engine.planning.is_empty());
        assert!(h.engine.active.is_empty());
        assert_eq!(h.event_kinds(), []);
        assert!(
            h.request(&actor("alice"), "app").await.is_later(),
            "the image is free again"
        );
    }

    #[tokio::test]
    async fn a_planned_request_is_stored_announced_and_waits_for_approval() {
        let mut h = Harness::new().await;
        let image = h.engine.settings.images["app"].image.clone();
        let plan = planned(&image, false);
        let target = plan.plan.target.digest.clone();

        let answer = h
            .engine
            .planned(pending("app", &image, &actor("alice")), Ok(plan))
            .await;

        let Answer::Requested { id, .. } = answer else {
            panic!("expected a request, got {answer:?}");
        };
        assert_eq!(
            answer,
            Answer::Requested {
                id,
                alias: "app".to_owned(),
                tags: vec![crate::domain::model::Tag::parse("latest").expect("tag")],
                target: target.clone(),
                required: 1,
                approvers: ["alice", "bob", "carol", "group:sre"]
                    .map(|a| Approver::parse(a).expect("approver"))
                    .to_vec(),
                expires_at: START.plus(EXPIRY),
                drill: false,
            }
        );
        let stored = h.stored(id).await;
        assert_eq!(stored.state, State::Requested);
        assert_eq!(stored.requester, actor("alice"));
        assert_eq!(stored.reason.as_deref(), Some("bad deploy"));
        assert_eq!(stored.target.digest, target);
        assert_eq!(stored.expires_at, START.plus(EXPIRY));
        assert_eq!(h.engine.active[&id], stored);
        let events = h.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Requested);
        assert_eq!(events[0].rollback.as_ref(), Some(&stored));
        let requested = h.audited("requested").await;
        assert_eq!(requested.len(), 1);
        assert_eq!(requested[0].rollback, Some(id));
    }

    #[tokio::test]
    async fn a_plan_with_every_tag_at_the_target_is_nothing_to_do() {
        let mut h = Harness::new().await;
        let image = h.engine.settings.images["app"].image.clone();
        let plan = planned(&image, true);
        let target = plan.plan.target.digest.clone();

        let answer = h
            .engine
            .planned(pending("app", &image, &actor("alice")), Ok(plan))
            .await;

        assert_eq!(
            answer,
            Answer::NothingToDo {
                alias: "app".to_owned(),
                target
            }
        );
        assert!(h.engine.active.is_empty());
        assert_eq!(h.event_kinds(), []);
        assert_eq!(h.audit_log().await, []);
    }

    #[tokio::test]
    async fn a_planning_panic_is_refused_and_audited() {
        let mut h = Harness::new().await;
        let image = h.engine.settings.images["app"].image.clone();

        let answer = h
            .engine
            .planned(
                pending("app", &image, &actor("alice")),
                Err(PlanFailure::Panic("index out of range".to_owned())),
            )
            .await;

        let error = "internal error while planning: index out of range".to_owned();
        assert_eq!(
            answer,
            Refusal::CannotPlan {
                alias: "app".to_owned(),
                error: error.clone()
            }
            .into()
        );
        let refused = h.audited("request_refused").await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].detail["why"], json!(error));
        assert!(h.engine.active.is_empty());
    }

    #[tokio::test]
    async fn a_plan_for_an_image_another_process_started_a_rollback_of_is_refused() {
        let mut h = Harness::new().await;
        // The store already has an active rollback of app that this engine does not know.
        let mut theirs = h.requested("api", &actor("carol")).await;
        let image = h.engine.settings.images["app"].image.clone();
        theirs.image = image.clone();
        theirs.alias = "app".to_owned();
        let audit = AuditEntry::new(START, None, None, "requested", json!({}));
        h.store.create(&mut theirs, audit).await.expect("created");

        let answer = h
            .engine
            .planned(
                pending("app", &image, &actor("alice")),
                Ok(planned(&image, false)),
            )
            .await;

        let refusal = Refusal::InProgressStored {
            image: image.to_string(),
            drill: false,
        };
        assert_eq!(answer, refusal.clone().into());
        assert_eq!(
            h.refusals().await,
            [("request".to_owned(), refusal.to_string())]
        );
        assert!(!h.engine.active.contains_key(&theirs.id));
        assert_eq!(h.engine.active.len(), 1, "only api");
        assert_eq!(h.event_kinds(), []);
    }
}
