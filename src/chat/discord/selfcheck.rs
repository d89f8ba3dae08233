//! Startup: the token works (`GET /users/@me`; a refused token stops `serve`), `/rollback` is
//! registered in each guild by bulk overwrite, the bot is in each guild, and in each configured
//! channel it has every permission it needs. A bot that cannot see its channel would silently
//! ignore approvals, so anything missing is logged with the fix and reported on `/readyz`.
//!
//! A member's permissions in a channel are computed as Discord documents: the `@everyone`
//! role's and the member's roles' permissions (everything for the owner or an administrator),
//! then the channel's overwrites: `@everyone`'s, the member's roles' together, the member's own.

use serde_json::Value;
use serenity::all::Permissions;

use super::config::Snowflake;
use super::rest::DiscordError;
use super::{commands, Discord};

/// What rollbot needs in each channel: see and post the plan, read it back, add the approval
/// reactions, start the thread on the plan and post in it.
pub const REQUIRED: Permissions = Permissions::VIEW_CHANNEL
    .union(Permissions::SEND_MESSAGES)
    .union(Permissions::READ_MESSAGE_HISTORY)
    .union(Permissions::ADD_REACTIONS)
    .union(Permissions::CREATE_PUBLIC_THREADS)
    .union(Permissions::SEND_MESSAGES_IN_THREADS);

/// A permission overwrite of a channel: for a role (`type` 0) or a member (`type` 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    pub id: u64,
    pub member: bool,
    pub allow: Permissions,
    pub deny: Permissions,
}

/// What Discord's answers say about the bot in one channel.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub guild: u64,
    pub owner: u64,
    pub user: u64,
    /// Role id → its permissions (the `@everyone` role's id is the guild's).
    pub roles: Vec<(u64, Permissions)>,
    /// The member's roles.
    pub member_roles: Vec<u64>,
    pub overwrites: Vec<Overwrite>,
}

/// The member's permissions in the channel.
pub fn permissions(facts: &Facts) -> Permissions {
    if facts.user == facts.owner {
        return Permissions::all();
    }
    let role = |id: u64| {
        facts
            .roles
            .iter()
            .find(|(role, _)| *role == id)
            .map_or(Permissions::empty(), |(_, p)| *p)
    };
    let mut base = role(facts.guild);
    for id in &facts.member_roles {
        base |= role(*id);
    }
    if base.contains(Permissions::ADMINISTRATOR) {
        return Permissions::all();
    }
    let mut perms = base;
    if let Some(everyone) = facts
        .overwrites
        .iter()
        .find(|o| !o.member && o.id == facts.guild)
    {
        perms &= !everyone.deny;
        perms |= everyone.allow;
    }
    let (mut allow, mut deny) = (Permissions::empty(), Permissions::empty());
    for overwrite in facts
        .overwrites
        .iter()
        .filter(|o| !o.member && facts.member_roles.contains(&o.id))
    {
        allow |= overwrite.allow;
        deny |= overwrite.deny;
    }
    perms &= !deny;
    perms |= allow;
    if let Some(own) = facts
        .overwrites
        .iter()
        .find(|o| o.member && o.id == facts.user)
    {
        perms &= !own.deny;
        perms |= own.allow;
    }
    perms
}

/// The names of what `REQUIRED` has and `perms` lacks (all of it without View Channel).
pub fn missing(perms: Permissions) -> Vec<&'static str> {
    if !perms.contains(Permissions::VIEW_CHANNEL) {
        return REQUIRED.get_permission_names();
    }
    (REQUIRED - perms).get_permission_names()
}

fn id_of(value: &Value) -> Option<u64> {
    value
        .as_str()
        .and_then(|s| Snowflake::parse(s).ok())
        .map(|s| s.0)
}

fn permissions_of(value: &Value) -> Permissions {
    Permissions::from_bits_truncate(value.as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn roles(guild: &Value) -> Vec<(u64, Permissions)> {
    guild["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((id_of(&r["id"])?, permissions_of(&r["permissions"]))))
        .collect()
}

fn overwrites(channel: &Value) -> Vec<Overwrite> {
    channel["permission_overwrites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            Some(Overwrite {
                id: id_of(&o["id"])?,
                member: o["type"].as_u64() == Some(1),
                allow: permissions_of(&o["allow"]),
                deny: permissions_of(&o["deny"]),
            })
        })
        .collect()
}

impl Discord {
    /// `GET /users/@me`: learns the bot's id.
    ///
    /// # Errors
    /// Discord refused the token (HTTP 401): nothing can work, `serve` stops with the fix. Any
    /// other failure is a problem on `/readyz`, not an error.
    pub async fn check_token(&self) -> Result<(), String> {
        match self.rest.get("GET /users/@me", "/users/@me").await {
            Ok(me) => match id_of(&me["id"]) {
                Some(id) => {
                    let _ = self.bot_user.set(id);
                    tracing::info!(bot_user = id, "Discord bot token works.");
                    Ok(())
                }
                None => {
                    self.problem("Discord's GET /users/@me answered no user id".to_owned());
                    Ok(())
                }
            },
            Err(error) if error.is_unauthorized() => {
                Err(format!("Discord refused the bot token: {error}"))
            }
            Err(error) => {
                self.problem(format!("discord: cannot check the bot token: {error}"));
                Ok(())
            }
        }
    }

    fn problem(&self, problem: String) {
        tracing::error!(problem = %problem, "Discord self-check.");
        crate::lock(&self.problems).push(problem);
    }

    /// Registers `/rollback` in every guild and checks every configured channel; problems are
    /// logged and kept for `/readyz`.
    pub async fn self_check(&self) {
        let Some(&bot) = self.bot_user.get() else {
            return;
        };
        let app = self.settings.application_id;
        let definition = vec![commands::definition()];
        let mut members = Vec::new();
        for guild in &self.settings.guilds {
            let path = format!("/applications/{app}/guilds/{guild}/commands");
            let route = "PUT /applications/{app}/guilds/{g}/commands";
            match self.rest.put(route, &path, Some(&definition)).await {
                Ok(_) => tracing::info!(guild = guild.0, "/rollback registered in the guild."),
                Err(error) => self.problem(format!(
                    "discord guild {guild}: /rollback could not be registered: {error}{}",
                    if error.is(50_001) {
                        " (install the bot with the applications.commands scope: see the README's install URL)"
                    } else {
                        ""
                    }
                )),
            }
            let guild_info = self
                .rest
                .get("GET /guilds/{g}", &format!("/guilds/{guild}"))
                .await;
            let member = self
                .rest
                .get(
                    "GET /guilds/{g}/members/{u}",
                    &format!("/guilds/{guild}/members/{bot}"),
                )
                .await;
            match (guild_info, member) {
                (Ok(info), Ok(member)) => members.push((guild.0, info, member)),
                (Err(error), _) | (_, Err(error)) => self.problem(not_in_guild(*guild, &error)),
            }
        }
        for channel in &self.settings.channels {
            let answer = self
                .rest
                .get("GET /channels/{c}", &format!("/channels/{channel}"))
                .await;
            let info = match answer {
                Ok(info) => info,
                Err(error) => {
                    self.problem(format!(
                        "discord channel {channel}: cannot be read: {error}"
                    ));
                    continue;
                }
            };
            let guild = id_of(&info["guild_id"]);
            let Some((guild, guild_info, member)) =
                members.iter().find(|(id, _, _)| Some(*id) == guild)
            else {
                self.problem(format!(
                    "discord channel {channel}: not in any of discord.guilds (or the bot is not in its guild)"
                ));
                continue;
            };
            let facts = Facts {
                guild: *guild,
                owner: id_of(&guild_info["owner_id"]).unwrap_or(0),
                user: bot,
                roles: roles(guild_info),
                member_roles: member["roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(id_of)
                    .collect(),
                overwrites: overwrites(&info),
            };
            let missing = missing(permissions(&facts));
            if !missing.is_empty() {
                self.problem(format!(
                    "discord channel {channel}: the bot lacks {}; give its role these permissions in the channel (or re-install with the README's URL)",
                    missing.join(", ")
                ));
            }
        }
        if self.settings.channels.is_empty() {
            tracing::warn!("discord.channels is empty: rollbot takes commands in any channel of its guilds, and no channel's permissions were checked.");
        }
    }
}

fn not_in_guild(guild: Snowflake, error: &DiscordError) -> String {
    format!(
        "discord guild {guild}: the bot is not in it or cannot read it ({error}); add it with the README's install URL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 100;
    const BOT: u64 = 7;
    const ROLE: u64 = 200;

    fn facts(everyone: Permissions, role: Permissions, overwrites: Vec<Overwrite>) -> Facts {
        Facts {
            guild: GUILD,
            owner: 1,
            user: BOT,
            roles: vec![(GUILD, everyone), (ROLE, role)],
            member_roles: vec![ROLE],
            overwrites,
        }
    }

    fn overwrite(id: u64, member: bool, allow: Permissions, deny: Permissions) -> Overwrite {
        Overwrite {
            id,
            member,
            allow,
            deny,
        }
    }

    #[test]
    fn permissions_follow_discords_order_of_roles_and_overwrites() {
        let none = Permissions::empty();
        let base = Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES;
        // (case, facts, what must be missing)
        let cases: Vec<(&str, Facts, Vec<&str>)> = vec![
            (
                "everything through the role",
                facts(none, REQUIRED, vec![]),
                vec![],
            ),
            (
                "@everyone's base without reactions and threads",
                facts(base | Permissions::READ_MESSAGE_HISTORY, none, vec![]),
                vec![
                    "Add Reactions",
                    "Create Public Threads",
                    "Send Messages in Threads",
                ],
            ),
            (
                "an administrator has all",
                facts(
                    none,
                    Permissions::ADMINISTRATOR,
                    vec![overwrite(GUILD, false, none, Permissions::all())],
                ),
                vec![],
            ),
            (
                "@everyone denied View Channel here: nothing works",
                facts(
                    REQUIRED,
                    none,
                    vec![overwrite(GUILD, false, none, Permissions::VIEW_CHANNEL)],
                ),
                REQUIRED.get_permission_names(),
            ),
            (
                "the role's overwrite allows what @everyone's denies",
                facts(
                    REQUIRED,
                    none,
                    vec![
                        overwrite(GUILD, false, none, Permissions::VIEW_CHANNEL),
                        overwrite(ROLE, false, Permissions::VIEW_CHANNEL, none),
                    ],
                ),
                vec![],
            ),
            (
                "the member's own overwrite comes last",
                facts(
                    REQUIRED,
                    none,
                    vec![
                        overwrite(ROLE, false, Permissions::ADD_REACTIONS, none),
                        overwrite(BOT, true, none, Permissions::ADD_REACTIONS),
                    ],
                ),
                vec!["Add Reactions"],
            ),
            (
                "an overwrite for another role does nothing",
                facts(
                    REQUIRED,
                    none,
                    vec![overwrite(999, false, none, Permissions::SEND_MESSAGES)],
                ),
                vec![],
            ),
        ];
        for (case, facts, expected) in cases {
            assert_eq!(missing(permissions(&facts)), expected, "{case}");
        }
        let mut owner = facts(none, none, vec![]);
        owner.owner = BOT;
        assert!(missing(permissions(&owner)).is_empty(), "the owner has all");
    }

    #[test]
    fn the_required_permissions_are_the_readmes_install_integer() {
        assert_eq!(REQUIRED.bits(), 309_237_713_984);
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!("permissions={}", REQUIRED.bits())),
            "the README's install URL must ask for exactly {}",
            REQUIRED.bits()
        );
    }

    #[test]
    fn answers_are_read_into_facts() {
        let guild = serde_json::json!({
            "id": "100", "owner_id": "1",
            "roles": [{ "id": "100", "permissions": "1024" }, { "id": "200", "permissions": "2048" }, { "id": "x", "permissions": "1" }]
        });
        assert_eq!(
            roles(&guild),
            [
                (100, Permissions::VIEW_CHANNEL),
                (200, Permissions::SEND_MESSAGES)
            ]
        );
        let channel = serde_json::json!({
            "permission_overwrites": [{ "id": "7", "type": 1, "allow": "64", "deny": "0" }]
        });
        assert_eq!(
            overwrites(&channel),
            [overwrite(
                7,
                true,
                Permissions::ADD_REACTIONS,
                Permissions::empty()
            )]
        );
    }
}
