//! `/rollback history IMAGE`: the chain of builds from the floating tag, read in a task.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn history(
        &mut self,
        actor: &Actor,
        name: ImageName,
        reply: oneshot::Sender<Answer>,
    ) -> Option<(oneshot::Sender<Answer>, Answer)> {
        let found = self
            .allowlisted(&name)
            .cloned()
            .and_then(|entry| self.with_registry(entry));
        let (entry, registry) = match found {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(actor, None, "history", why).await)),
        };
        let tag = self.settings.floating_tags(Some(&entry), &[]).remove(0);
        self.tasks.spawn(async move {
            let answer = match registry
                .head_manifest(&entry.image.repository, &Reference::Tag(tag.clone()))
                .await
            {
                Ok(Some(head)) => {
                    let history =
                        manifest::walk(&registry, &entry.image, &head.digest, 10, true, |_| false)
                            .await;
                    Answer::History {
                        alias: entry.alias.clone(),
                        tag,
                        history,
                    }
                }
                Ok(None) => Refusal::NoTag {
                    image: entry.image.clone(),
                    tag,
                }
                .into(),
                Err(error) => Refusal::HistoryUnreadable(error.to_string()).into(),
            };
            let _ = reply.send(answer);
        });
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::command::ImageName;
    use crate::engine::testing::{actor, Harness, Reply};
    use crate::engine::{Answer, Refusal};

    async fn history(h: &mut Harness, name: &str) -> Reply {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let decided = h
            .engine
            .history(&actor("bob"), ImageName::Alias(name.to_owned()), reply)
            .await;
        Reply::of(decided, answer)
    }

    #[tokio::test]
    async fn history_of_an_image_not_on_the_allowlist_is_refused_and_audited() {
        let mut h = Harness::new().await;

        let answer = history(&mut h, "nope").await.now();

        let Answer::Refused(refusal @ Refusal::NotAllowlisted { .. }) = answer else {
            panic!("expected not allowlisted, got {answer:?}");
        };
        assert_eq!(
            h.refusals().await,
            [("history".to_owned(), refusal.to_string())]
        );
    }

    #[tokio::test]
    async fn history_from_a_registry_that_does_not_answer_is_unreadable() {
        let mut h = Harness::new().await;

        let answer = history(&mut h, "app").await.later().await;

        assert!(
            matches!(answer, Answer::Refused(Refusal::HistoryUnreadable(_))),
            "{answer:?}"
        );
        assert!(h.engine.active.is_empty());
        assert_eq!(h.event_kinds(), []);
    }
}
