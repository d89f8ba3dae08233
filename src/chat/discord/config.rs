//! `[discord]`: the connection mode, the bot token and the application's public key (by the
//! config's one secret rule), the application, guilds and channels by id, the approval
//! reactions, the API URL.

use serde::Deserialize;

use crate::config::{Checked, ConfigProblem, Layers, Problems, Secrets};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscordMode {
    /// rollbot opens the Gateway WebSocket: interactions and reactions arrive over it; no
    /// public URL needed.
    Gateway,
    /// Discord posts interactions to `/discord/interactions` on this server, signed.
    /// Reactions need the Gateway: in this mode approve by button or subcommand.
    Http,
}

/// A Discord id (a snowflake): a positive 64-bit number, written in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(pub u64);

impl Snowflake {
    /// A snowflake from its decimal text (1 to 20 ASCII digits, not 0).
    ///
    /// # Errors
    /// Anything else, worded for the config or a payload.
    pub fn parse(text: &str) -> Result<Snowflake, String> {
        let digits =
            !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<u64>() {
            Ok(id) if digits && id > 0 => Ok(Snowflake(id)),
            _ => Err(format!(
                "'{text}' is not a Discord id (a number like 1234567890123456789; Developer Mode → Copy ID)"
            )),
        }
    }
}

impl std::fmt::Display for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone)]
pub struct DiscordSettings {
    pub mode: DiscordMode,
    /// The bot token (Developer Portal → Bot → Reset Token).
    pub bot_token: Secret,
    /// HTTP mode only: the application's public key, 64 hex characters.
    pub public_key: Option<String>,
    pub application_id: Snowflake,
    /// Guilds whose `/rollback` command rollbot registers and takes commands from.
    pub guilds: Vec<Snowflake>,
    /// Channels rollbot takes commands in and posts to; empty: any channel of those guilds.
    pub channels: Vec<Snowflake>,
    /// Unicode emoji on a plan message that approve or reject it (Gateway mode).
    pub approve_reaction: String,
    pub reject_reaction: String,
    /// `https://discord.com` (tests point it at a loopback fake); the API is under `/api/v10`.
    pub api_url: String,
}

/// `[discord]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscordSection {
    enabled: Checked<bool>,
    mode: Checked<DiscordMode>,
    bot_token_env: Checked<String>,
    bot_token_file: Checked<String>,
    public_key_env: Checked<String>,
    public_key_file: Checked<String>,
    application_id: Checked<String>,
    guilds: Checked<Vec<String>>,
    channels: Checked<Vec<String>>,
    approve_reaction: Checked<String>,
    reject_reaction: Checked<String>,
    api_url: Checked<String>,
}

impl DiscordSettings {
    /// Reads `[discord]`: `None` when Discord is not enabled (then only its keys' names are
    /// judged).
    ///
    /// # Errors
    /// Every problem of the section.
    pub fn read(layers: &Layers) -> Result<Option<DiscordSettings>, Vec<ConfigProblem>> {
        let secrets = layers.secrets();
        layers.read("discord", |section| validate(section, secrets))
    }
}

/// Every id of a list, each a snowflake listed once (every bad one is reported).
fn snowflakes(problems: &mut Problems, field: &Checked<Vec<String>>) -> Option<Vec<Snowflake>> {
    let texts = problems.optional(field).unwrap_or_default();
    let mut ids = Vec::new();
    let mut ok = true;
    for text in &texts {
        match Snowflake::parse(text) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(id) => {
                problems.add(field, format!("{id} is listed twice"));
                ok = false;
            }
            Err(why) => {
                problems.add(field, why);
                ok = false;
            }
        }
    }
    ok.then_some(ids)
}

/// A reaction: one Unicode emoji as Discord sends it in `emoji.name` (no `:name:` shortcode,
/// no custom `<:name:id>`).
fn reaction(problems: &mut Problems, field: &Checked<String>) -> Option<String> {
    problems.parse(field, |text| {
        let ok = !text.is_empty()
            && text.chars().count() <= 8
            && text
                .chars()
                .all(|c| !c.is_ascii() && !c.is_whitespace() && !c.is_control());
        if ok {
            Ok(text)
        } else {
            Err(format!(
                "'{text}' is not a Unicode emoji like ✅ (Discord sends reactions as the emoji itself, not :names:)"
            ))
        }
    })
}

fn validate(
    section: DiscordSection,
    secrets: Secrets<'_>,
) -> Result<Option<DiscordSettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    match problems.required(&section.enabled) {
        Some(true) => {}
        Some(false) => return Ok(None),
        None => return problems.finish(None),
    }
    let mode = problems.required(&section.mode);
    let bot_token = secrets
        .read(
            &section.bot_token_env,
            &section.bot_token_file,
            &mut problems,
        )
        .map(|read| read.secret);
    let public_key = (mode == Some(DiscordMode::Http)).then(|| {
        let read = secrets.read(
            &section.public_key_env,
            &section.public_key_file,
            &mut problems,
        )?;
        let key = read.secret.expose().trim().to_owned();
        if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(key)
        } else {
            problems.add(
                read.key,
                format!(
                    "{} does not hold an application public key (64 hex characters: Developer Portal → General Information → Public Key)",
                    read.source
                ),
            );
            None
        }
    });
    let application_id = problems.parse(&section.application_id, |text| Snowflake::parse(&text));
    let guilds = snowflakes(&mut problems, &section.guilds);
    if guilds.as_ref().is_some_and(Vec::is_empty) {
        problems.add(
            &section.guilds,
            "name at least one guild (server) id: rollbot registers /rollback there",
        );
    }
    let channels = snowflakes(&mut problems, &section.channels);
    let approve_reaction = reaction(&mut problems, &section.approve_reaction);
    let reject_reaction = reaction(&mut problems, &section.reject_reaction);
    if approve_reaction.is_some() && approve_reaction == reject_reaction {
        problems.add(
            &section.reject_reaction,
            "must differ from discord.approve_reaction",
        );
    }
    let api_url = problems.api_url(&section.api_url);
    let settings = || {
        Some(Some(DiscordSettings {
            mode: mode?,
            bot_token: bot_token?,
            public_key: public_key.map(|key| key.ok_or(())).transpose().ok()?,
            application_id: application_id?,
            guilds: guilds?,
            channels: channels?,
            approve_reaction: approve_reaction?,
            reject_reaction: reject_reaction?,
            api_url: api_url?,
        }))
    };
    problems.finish(settings())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_are_positive_decimal_numbers() {
        assert_eq!(
            Snowflake::parse("1234567890123456789"),
            Ok(Snowflake(1_234_567_890_123_456_789))
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1e3",
            "C0123",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            assert!(Snowflake::parse(bad).is_err(), "{bad:?}");
        }
    }
}
