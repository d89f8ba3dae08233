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
