//! The fake Discord's world as a test sets it up: guilds, roles, members, channels and
//! permission overwrites; and Discord's permission computation over them.

use std::collections::BTreeMap;

use serenity::all::Permissions;

use super::{
    timestamp, Channel, FakeDiscord, FakeState, Guild, Member, Role, Target, BOT_ID,
    DEFAULT_EVERYONE, OWNER,
};

impl FakeDiscord {
    /// Another guild the bot is in: `@everyone` with Discord's defaults, the bot as a member
    /// without roles, [`OWNER`] as owner.
    pub fn add_guild(&self, id: u64, name: &str) {
        let joined = timestamp();
        self.lock().guilds.insert(
            id,
            Guild {
                name: name.to_owned(),
                owner_id: OWNER,
                roles: vec![Role {
                    id,
                    name: "@everyone".to_owned(),
                    permissions: DEFAULT_EVERYONE,
                    position: 0,
                    managed: false,
                }],
                members: BTreeMap::from([(
                    BOT_ID,
                    Member {
                        username: "rollbot".to_owned(),
                        bot: true,
                        roles: Vec::new(),
                        joined_at: joined,
                    },
                )]),
            },
        );
    }

    pub fn add_role(&self, guild: u64, id: u64, name: &str, permissions: Permissions) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        let position = guild.roles.len() as u64;
        guild.roles.push(Role {
            id,
            name: name.to_owned(),
            permissions: permissions.bits(),
            position,
            managed: false,
        });
    }

    /// Changes a role's permissions (`@everyone` is the role whose id is the guild's).
    pub fn set_role_permissions(&self, guild: u64, role: u64, permissions: Permissions) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        let role = guild
            .roles
            .iter_mut()
            .find(|r| r.id == role)
            .expect("a configured role");
        role.permissions = permissions.bits();
    }

    pub fn add_member(&self, guild: u64, id: u64, username: &str, roles: &[u64]) {
        let joined = timestamp();
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.insert(
            id,
            Member {
                username: username.to_owned(),
                bot: false,
                roles: roles.to_vec(),
                joined_at: joined,
            },
        );
    }

    /// A member's roles ([`BOT_ID`] for the bot's own).
    pub fn set_member_roles(&self, guild: u64, user: u64, roles: &[u64]) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.get_mut(&user).expect("a member").roles = roles.to_vec();
    }

    /// The user leaves the guild; with [`BOT_ID`] the bot is no longer in it (its REST routes
    /// answer as for a guild the bot cannot see).
    pub fn remove_member(&self, guild: u64, user: u64) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.remove(&user);
    }

    pub fn add_channel(&self, guild: u64, id: u64, name: &str) {
        self.lock().channels.insert(
            id,
            Channel {
                guild_id: guild,
                name: name.to_owned(),
                kind: 0,
                parent_id: None,
                overwrites: Vec::new(),
                thread: None,
            },
        );
    }

    /// Sets (replaces) the channel's overwrite for a role or member.
    pub fn set_overwrite(
        &self,
        channel: u64,
        target: Target,
        allow: Permissions,
        deny: Permissions,
    ) {
        let (id, kind) = match target {
            Target::Role(id) => (id, 0),
            Target::Member(id) => (id, 1),
        };
        let mut state = self.lock();
        let channel = state
            .channels
            .get_mut(&channel)
            .expect("a configured channel");
        channel.overwrites.retain(|o| o.0 != id);
        channel
            .overwrites
            .push((id, kind, allow.bits(), deny.bits()));
    }

    /// Takes `permissions` away from the bot in one channel (a member overwrite).
    pub fn deny_bot(&self, channel: u64, permissions: Permissions) {
        self.set_overwrite(
            channel,
            Target::Member(BOT_ID),
            Permissions::empty(),
            permissions,
        );
    }

    /// A user's permissions in a channel as Discord computes them.
    pub fn permissions(&self, channel: u64, user: u64) -> Permissions {
        Permissions::from_bits_truncate(self.lock().permissions_in(channel, user))
    }
}

impl FakeState {
    /// Discord's permission computation: `@everyone` and role permissions, ADMINISTRATOR and
    /// the owner get everything; then the channel's (a thread's parent's) overwrites:
    /// `@everyone`, the member's roles together, the member; no VIEW_CHANNEL, nothing.
    pub(super) fn permissions_in(&self, channel: u64, user: u64) -> u64 {
        let all = Permissions::all().bits();
        let Some(mut channel) = self.channels.get(&channel) else {
            return 0;
        };
        if let Some(parent) = channel.parent_id.and_then(|p| self.channels.get(&p)) {
            channel = parent;
        }
        let guild_id = channel.guild_id;
        let Some(guild) = self.guilds.get(&guild_id) else {
            return 0;
        };
        if guild.owner_id == user {
            return all;
        }
        let Some(member) = guild.members.get(&user) else {
            return 0;
        };
        let role = |id: u64| guild.roles.iter().find(|r| r.id == id);
        let mut permissions = role(guild_id).map_or(0, |r| r.permissions);
        for id in &member.roles {
            permissions |= role(*id).map_or(0, |r| r.permissions);
        }
        if permissions & Permissions::ADMINISTRATOR.bits() != 0 {
            return all;
        }
        let overwrite = |id: u64| channel.overwrites.iter().find(|o| o.0 == id);
        if let Some((_, _, allow, deny)) = overwrite(guild_id) {
            permissions = (permissions & !deny) | allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for id in &member.roles {
            if let Some((_, 0, a, d)) = overwrite(*id) {
                allow |= a;
                deny |= d;
            }
        }
        permissions = (permissions & !deny) | allow;
        if let Some((_, 1, allow, deny)) = overwrite(user) {
            permissions = (permissions & !deny) | allow;
        }
        if permissions & Permissions::VIEW_CHANNEL.bits() == 0 {
            return 0;
        }
        permissions
    }
}
