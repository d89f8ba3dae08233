//! Communication templates: the chat summary, the GitHub Discussion's title, announcement and
//! update comments, and the Docker Hub banner. Markdown with minijinja's small template
//! language (`{{ value }}`, `{% if %}`, `{% for %}`, filters such as `join` and `length`); the
//! built-in ones are `config/templates/*`, and `[templates]` in the config points at your own.
//!
//! Every template is compiled and rendered once with a sample context at startup, with
//! undefined variables as errors, so a typo is found then and not at the first incident. The
//! context is [`Context`]; `config/templates/README.md` documents it.
//!
//! Every untrusted value (reasons, names, errors, step details, platforms) is made safe for the
//! template's output ([`TemplateName::output`], [`super::markup`]) by [`Context::escaped`]
//! before rendering, so a template, built-in or your own, cannot be made to carry markup,
//! mentions or rollbot's banner markers by what people type.

use std::path::Path;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use super::markup::Output;
use crate::domain::model::TagNow;
use crate::domain::policy::Decision;
use crate::domain::record::{CheckReport, RollbackRecord, StepReport};
use crate::domain::rollback::Timestamp;

/// The templates, by name (the keys of `[templates]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateName {
    ChatSummary,
    DiscussionTitle,
    DiscussionAnnouncement,
    DiscussionComment,
    DockerHubBanner,
}

impl TemplateName {
    pub const ALL: [TemplateName; 5] = [
        TemplateName::ChatSummary,
        TemplateName::DiscussionTitle,
        TemplateName::DiscussionAnnouncement,
        TemplateName::DiscussionComment,
        TemplateName::DockerHubBanner,
    ];

    pub fn key(self) -> &'static str {
        match self {
            TemplateName::ChatSummary => "chat_summary",
            TemplateName::DiscussionTitle => "discussion_title",
            TemplateName::DiscussionAnnouncement => "discussion_announcement",
            TemplateName::DiscussionComment => "discussion_comment",
            TemplateName::DockerHubBanner => "dockerhub_banner",
        }
    }

    /// Where the rendered text goes, which decides how untrusted values are escaped.
    pub fn output(self) -> Output {
        match self {
            TemplateName::ChatSummary => Output::Chat,
            TemplateName::DiscussionTitle => Output::GitHubTitle,
            TemplateName::DiscussionAnnouncement | TemplateName::DiscussionComment => {
                Output::GitHubMarkdown
            }
            TemplateName::DockerHubBanner => Output::DockerHubMarkdown,
        }
    }

    fn builtin(self) -> &'static str {
        match self {
            TemplateName::ChatSummary => include_str!("../../config/templates/chat_summary.md"),
            TemplateName::DiscussionTitle => {
                include_str!("../../config/templates/discussion_title.txt")
            }
            TemplateName::DiscussionAnnouncement => {
                include_str!("../../config/templates/discussion_announcement.md")
            }
            TemplateName::DiscussionComment => {
                include_str!("../../config/templates/discussion_comment.md")
            }
            TemplateName::DockerHubBanner => {
                include_str!("../../config/templates/dockerhub_banner.md")
            }
        }
    }
}

/// A tag and a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDigest {
    pub tag: String,
    pub digest: String,
}

/// A pipeline step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepContext {
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    pub detail: String,
}

impl StepContext {
    /// A pipeline step as the templates see it.
    pub fn of(step: &StepReport) -> StepContext {
        StepContext {
            name: step.name.to_string(),
            ok: step.ok,
            duration_ms: step.duration_ms,
            detail: step.detail.clone(),
        }
    }
}

/// The `rollbot rollback …` command that moves `tags` of `image` to `to` again.
pub fn rollback_command(image: &str, to: &str, tags: &[String]) -> String {
    let tag_flags: String = tags.iter().map(|t| format!(" --tag {t}")).collect();
    format!("rollbot rollback {image} --to {to}{tag_flags} --yes")
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonContext {
    pub id: String,
    pub name: String,
}

/// Links to elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// The GitHub Discussion, once created.
    pub discussion: Option<String>,
}

/// What kind of untrusted value [`Context::map_untrusted`] hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// The requester's platform id (normally an id; chat mentions them with it).
    RequesterId,
    /// People's words and names, error texts, step details, platforms.
    Words,
}

/// What every template can use. Field names are the documented template variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// `rb-17`
    pub rollback_id: String,
    /// `registry.example.com/acme/app`
    pub image: String,
    /// The config alias, `app`.
    pub alias: String,
    /// The floating tags.
    pub tags: Vec<String>,
    /// Each tag and the digest it pointed at before.
    pub from: Vec<TagDigest>,
    /// Each tag and the digest it points at now (after the run).
    pub now: Vec<TagDigest>,
    pub to_digest: String,
    /// `sha256:0123456789ab`
    pub to_digest_short: String,
    pub platforms: Vec<String>,
    pub reason: Option<String>,
    pub requester: PersonContext,
    /// Names of the people who approved.
    pub approvers: Vec<String>,
    /// `requested`, `succeeded`, `failed`, …
    pub state: String,
    /// What happened: `approved`, `succeeded`, `failed`, `interrupted`, `hold_released`.
    pub event: String,
    pub steps: Vec<StepContext>,
    pub total_ms: u64,
    /// `1.2 s`
    pub total: String,
    /// `15m`
    pub rto: String,
    /// `0.13%`
    pub rto_used: String,
    /// The `rollbot rollback …` command that moves the tags to this target again.
    pub rollback_command: String,
    /// The same with skopeo, digest-preserving.
    pub manual_command: String,
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub finished_at: String,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
    pub links: Links,
    /// For the Docker Hub banner: render the short form.
    pub short: bool,
}

impl Context {
    /// The context for an event about `record`.
    pub fn of(
        record: &RollbackRecord,
        event: &str,
        rto: Duration,
        links: Links,
        now: Timestamp,
    ) -> Context {
        let tags: Vec<String> = record.tags.iter().map(|t| t.tag.to_string()).collect();
        let end = record.finished_at.unwrap_or(now);
        let total_ms = end.since(record.created_at);
        let image = record.image.to_string();
        let to = record.target.digest.to_string();
        Context {
            rollback_id: record.id.to_string(),
            image: image.clone(),
            alias: record.alias.clone(),
            from: record
                .tags
                .iter()
                .map(|t| TagDigest {
                    tag: t.tag.to_string(),
                    digest: t.from.to_string(),
                })
                .collect(),
            now: record
                .tags_now
                .iter()
                .map(|(tag, digest)| TagDigest {
                    tag: tag.to_string(),
                    digest: match digest {
                        TagNow::At(digest) => digest.to_string(),
                        other => other.short().to_owned(),
                    },
                })
                .collect(),
            to_digest_short: record.target.digest.short().to_owned(),
            platforms: record.target.platforms.clone(),
            reason: record.reason.clone(),
            requester: PersonContext {
                id: record.requester.id.clone(),
                name: record.requester.name.clone(),
            },
            approvers: record
                .votes
                .iter()
                .filter(|v| v.decision == Decision::Approve)
                .map(|v| v.actor.name.clone())
                .collect(),
            state: record.state.to_string(),
            event: event.to_owned(),
            steps: record.steps.iter().map(StepContext::of).collect(),
            total_ms,
            total: crate::report::duration_text(total_ms),
            rto: humantime::format_duration(rto).to_string(),
            rto_used: crate::report::rto_share_text(total_ms, rto),
            rollback_command: rollback_command(&image, &to, &tags),
            manual_command: crate::manifest::manual_command(&image, &to, &tags, false),
            to_digest: to,
            tags,
            error: record.error.clone(),
            created_at: record.created_at.rfc3339(),
            finished_at: end.rfc3339(),
            released_by: None,
            release_reason: None,
            links,
            short: false,
        }
    }

    /// This context with every untrusted value made safe for `output` ([`Context::map_untrusted`]).
    pub fn escaped(&self, output: Output) -> Context {
        self.clone().map_untrusted(|_, text| output.escape(text))
    }

    /// This context with `change` applied to every untrusted value. Values rollbot made or
    /// parsed at the edge (ids, image names, tags, digests, times, commands built from them, the
    /// Discussion's URL from GitHub) are kept; people's words and names, error texts, step
    /// details and platforms (from the image's manifest) are untrusted. Every field is named
    /// here, so a new one cannot skip the decision. The one untrusted value that is usually an
    /// id, the requester's, comes as [`Untrusted::RequesterId`] (chat keeps it to mention them).
    pub fn map_untrusted(self, change: impl Fn(Untrusted, &str) -> String) -> Context {
        let Context {
            rollback_id,
            image,
            alias,
            tags,
            from,
            now,
            to_digest,
            to_digest_short,
            platforms,
            reason,
            requester,
            approvers,
            state,
            event,
            steps,
            total_ms,
            total,
            rto,
            rto_used,
            rollback_command,
            manual_command,
            error,
            created_at,
            finished_at,
            released_by,
            release_reason,
            links,
            short,
        } = self;
        let words = |text: &String| change(Untrusted::Words, text);
        Context {
            rollback_id,
            image,
            alias,
            tags,
            from,
            now,
            to_digest,
            to_digest_short,
            platforms: platforms.iter().map(words).collect(),
            reason: reason.as_ref().map(words),
            requester: PersonContext {
                id: change(Untrusted::RequesterId, &requester.id),
                name: words(&requester.name),
            },
            approvers: approvers.iter().map(words).collect(),
            state,
            event,
            steps: steps
                .into_iter()
                .map(|step| StepContext {
                    detail: words(&step.detail),
                    ..step
                })
                .collect(),
            total_ms,
            total,
            rto,
            rto_used,
            rollback_command,
            manual_command,
            error: error.as_ref().map(words),
            created_at,
            finished_at,
            released_by: released_by.as_ref().map(words),
            release_reason: release_reason.as_ref().map(words),
            links,
            short,
        }
    }

    /// Replaces what failed health checks printed, wherever it appears (the error, the
    /// `checks` step), with a note that it is withheld: for public places (the Discussion
    /// unless `github.publish_check_output`, the Docker Hub banner always).
    pub fn withhold_check_output(&mut self, checks: &[CheckReport]) {
        for check in checks {
            let Some(withheld) = check.withheld_detail() else {
                continue;
            };
            let replace = |text: &mut String| {
                if text.contains(&check.detail) {
                    *text = text.replace(&check.detail, &withheld);
                }
            };
            if let Some(error) = &mut self.error {
                replace(error);
            }
            for step in &mut self.steps {
                replace(&mut step.detail);
            }
        }
    }

    /// A complete example context: what startup renders every template with.
    pub fn sample() -> Context {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        Context {
            rollback_id: "rb-1".into(),
            image: "registry.example.com/acme/app".into(),
            alias: "app".into(),
            tags: vec!["latest".into()],
            from: vec![TagDigest {
                tag: "latest".into(),
                digest: digest('c'),
            }],
            now: vec![TagDigest {
                tag: "latest".into(),
                digest: digest('b'),
            }],
            to_digest: digest('b'),
            to_digest_short: "sha256:bbbbbbbbbbbb".into(),
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            reason: Some("v1.2.3 crashes on start".into()),
            requester: PersonContext {
                id: "U1".into(),
                name: "Alice".into(),
            },
            approvers: vec!["Bob".into()],
            state: "succeeded".into(),
            event: "succeeded".into(),
            steps: vec![StepContext {
                name: "retag".into(),
                ok: true,
                duration_ms: 4,
                detail: "moved latest".into(),
            }],
            total_ms: 31_000,
            total: "31.0 s".into(),
            rto: "15m".into(),
            rto_used: "3.44%".into(),
            rollback_command:
                "rollbot rollback registry.example.com/acme/app --to sha256:bbbb --tag latest --yes"
                    .into(),
            manual_command: "skopeo copy --all --preserve-digests docker://… docker://…".into(),
            error: Some("an example error".into()),
            created_at: "2026-11-26T10:00:00Z".into(),
            finished_at: "2026-11-26T10:00:31Z".into(),
            released_by: Some("Bob".into()),
            release_reason: Some("fixed in v1.2.4".into()),
            links: Links {
                discussion: Some("https://github.com/acme/app/discussions/1".into()),
            },
            short: false,
        }
    }
}

/// The compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Templates {
        match Templates::load(&[]) {
            Ok(templates) => templates,
            Err(problems) => unreachable!("the built-in templates are tested: {problems:?}"),
        }
    }

    /// The built-in templates, with `overrides` (name, file) replacing some. Each template is
    /// compiled and rendered with [`Context::sample`] (in every event and both banner forms).
    ///
    /// # Errors
    /// Every problem found: unreadable files, syntax errors, unknown variables.
    pub fn load(overrides: &[(TemplateName, &Path)]) -> Result<Templates, Vec<String>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut problems = Vec::new();
        for name in TemplateName::ALL {
            let source = match overrides.iter().find(|(n, _)| *n == name) {
                Some((_, path)) => match std::fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(error) => {
                        problems.push(format!(
                            "templates.{}: cannot read {}: {error}",
                            name.key(),
                            path.display()
                        ));
                        continue;
                    }
                },
                None => name.builtin().to_owned(),
            };
            if let Err(error) = env.add_template_owned(name.key(), source) {
                problems.push(format!("templates.{}: {}", name.key(), describe(&error)));
            }
        }
        let templates = Templates { env };
        if problems.is_empty() {
            for name in TemplateName::ALL {
                for event in [
                    "approved",
                    "succeeded",
                    "failed",
                    "interrupted",
                    "finished_elsewhere",
                    "hold_released",
                ] {
                    for short in [false, true] {
                        let mut context = Context::sample();
                        context.event = event.to_owned();
                        context.state = if event == "failed" {
                            "failed".into()
                        } else {
                            "succeeded".into()
                        };
                        context.short = short;
                        if let Err(error) = templates.render(name, &context) {
                            let problem = format!("templates.{}: {error}", name.key());
                            if !problems.contains(&problem) {
                                problems.push(problem);
                            }
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(templates)
        } else {
            Err(problems)
        }
    }

    /// Renders `name` with `context` (its untrusted values escaped for the template's output),
    /// trimmed.
    ///
    /// # Errors
    /// A template error (unknown variable, bad filter argument), as text.
    pub fn render(&self, name: TemplateName, context: &Context) -> Result<String, String> {
        let template = self
            .env
            .get_template(name.key())
            .map_err(|e| describe(&e))?;
        template
            .render(minijinja::value::Serde(context.escaped(name.output())))
            .map(|text| text.trim().to_owned())
            .map_err(|e| describe(&e))
    }
}

fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    if let Some(line) = error.line() {
        if !text.contains("line") {
            text.push_str(&format!(" (line {line})"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_templates_render() {
        let templates = Templates::builtin();
        let context = Context::sample();
        let title = templates
            .render(TemplateName::DiscussionTitle, &context)
            .expect("title");
        assert_eq!(
            title,
            "Rollback of registry.example.com/acme/app to sha256:bbbbbbbbbbbb (rb-1)"
        );
        let summary = templates
            .render(TemplateName::ChatSummary, &context)
            .expect("summary");
        assert!(
            summary.starts_with("<@U1>: rb-1 done. latest now points at `sha256:bbbbbbbbbbbb`"),
            "{summary}"
        );
        let banner = templates
            .render(TemplateName::DockerHubBanner, &context)
            .expect("banner");
        assert!(
            banner.starts_with("> ⚠️ **Rolled back:** `latest` now points at `sha256:bbbb"),
            "{banner}"
        );
    }

    #[test]
    fn template_errors_are_found_at_load_time() {
        let dir = tempfile::tempdir().expect("dir");
        let typo = dir.path().join("typo.md");
        std::fs::write(&typo, "{{ imgae }}").expect("write");
        let broken = dir.path().join("broken.md");
        std::fs::write(&broken, "{% if %}").expect("write");
        let missing = dir.path().join("missing.md");
        let problems = Templates::load(&[
            (TemplateName::DiscussionTitle, typo.as_path()),
            (TemplateName::DockerHubBanner, broken.as_path()),
            (TemplateName::ChatSummary, missing.as_path()),
        ])
        .expect_err("problems");
        let text = problems.join("\n");
        assert!(
            text.contains("templates.chat_summary: cannot read"),
            "{text}"
        );
        assert!(
            text.contains("templates.dockerhub_banner: syntax error"),
            "{text}"
        );
        assert!(
            !text.contains("templates.discussion_title"),
            "syntax is checked first: {text}"
        );
        let problems =
            Templates::load(&[(TemplateName::DiscussionTitle, typo.as_path())]).expect_err("typo");
        assert!(
            problems
                .join("\n")
                .contains("templates.discussion_title: undefined value"),
            "{problems:?}"
        );
    }
}
