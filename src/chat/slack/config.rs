//! `[slack]`: the connection mode, the tokens (by the config's one secret rule), the channels
//! rollbot works in, the approval reactions, the API URL, the user-group cache.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checked, ConfigProblem, HumanDuration, Layers, Problems, Secrets, DAY, S};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// A WebSocket opened by rollbot (app-level token); no public URL needed.
    Socket,
    /// Slack posts to `/slack/commands`, `/slack/interactions`, `/slack/events`, signed.
    Http,
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: SlackMode,
    /// `xoxb-…`: Web API calls.
    pub bot_token: Secret,
    /// `xapp-…`: Socket Mode only.
    pub app_token: Option<Secret>,
    /// HTTP mode only.
    pub signing_secret: Option<Secret>,
    /// Channel ids rollbot works in; empty: any channel it is in.
    pub channels: Vec<String>,
    pub approve_reaction: String,
    pub reject_reaction: String,
    /// `https://slack.com/api` (tests point it at a loopback fake).
    pub api_url: String,
    /// How long user-group memberships are cached.
    pub group_cache: Duration,
}

/// `[slack]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackSection {
    enabled: Checked<bool>,
    mode: Checked<SlackMode>,
    bot_token_env: Checked<String>,
    bot_token_file: Checked<String>,
    app_token_env: Checked<String>,
    app_token_file: Checked<String>,
    signing_secret_env: Checked<String>,
    signing_secret_file: Checked<String>,
    channels: Checked<Vec<String>>,
    approve_reaction: Checked<String>,
    reject_reaction: Checked<String>,
    api_url: Checked<String>,
    group_cache: Checked<HumanDuration>,
}

impl SlackSettings {
    /// Reads `[slack]`: `None` when Slack is not enabled (then only its keys' names are
    /// judged).
    ///
    /// # Errors
    /// Every problem of the section.
    pub fn read(layers: &Layers) -> Result<Option<SlackSettings>, Vec<ConfigProblem>> {
        let secrets = layers.secrets();
        layers.read("slack", |section| validate(section, secrets))
    }
}

fn validate(
    section: SlackSection,
    secrets: Secrets<'_>,
) -> Result<Option<SlackSettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    match problems.required(&section.enabled) {
        Some(true) => {}
        Some(false) => return Ok(None),
        None => return problems.finish(None),
    }
    let mode = problems.required(&section.mode);
    let mut token = |env: &Checked<String>, file: &Checked<String>, prefix: Option<&str>| {
        let read = secrets.read(env, file, &mut problems)?;
        match prefix {
            Some(prefix) if !read.secret.expose().starts_with(prefix) => {
                problems.add(
                    read.key,
                    format!("{} does not hold a {prefix}… token", read.source),
                );
                None
            }
            _ => Some(read.secret),
        }
    };
    let bot_token = token(
        &section.bot_token_env,
        &section.bot_token_file,
        Some("xoxb-"),
    );
    let app_token = (mode == Some(SlackMode::Socket)).then(|| {
        token(
            &section.app_token_env,
            &section.app_token_file,
            Some("xapp-"),
        )
    });
    let signing_secret = (mode == Some(SlackMode::Http)).then(|| {
        token(
            &section.signing_secret_env,
            &section.signing_secret_file,
            None,
        )
    });
    let channels = problems.optional(&section.channels).unwrap_or_default();
    for channel in &channels {
        let ok = channel.len() >= 9
            && matches!(channel.as_bytes()[0], b'C' | b'G' | b'D')
            && channel
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            problems.add(
                &section.channels,
                format!("'{channel}' is not a Slack channel id like C0123456789 (names change; ids do not)"),
            );
        }
    }
    let approve_reaction = problems.required(&section.approve_reaction);
    let reject_reaction = problems.required(&section.reject_reaction);
    let api_url = problems.api_url(&section.api_url);
    let group_cache = problems.duration(&section.group_cache, S, DAY);
    let settings = || {
        Some(Some(SlackSettings {
            mode: mode?,
            bot_token: bot_token?,
            app_token: app_token.map(|token| token.ok_or(())).transpose().ok()?,
            signing_secret: signing_secret
                .map(|secret| secret.ok_or(()))
                .transpose()
                .ok()?,
            channels,
            approve_reaction: approve_reaction?,
            reject_reaction: reject_reaction?,
            api_url: api_url?,
            group_cache: group_cache?,
        }))
    };
    problems.finish(settings())
}
