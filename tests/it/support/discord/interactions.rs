//! Interactions and reactions a test makes: slash commands, autocomplete, button clicks and
//! reactions built from the world as it is (the invoker's roles and permissions, the channel,
//! the registered command's id), known to the fake from then on, and dispatched on the Gateway.

use std::time::Instant;

use serde_json::{json, Value};

use super::{
    autocomplete_interaction, button_interaction, command_interaction, id_of, reaction_add,
    FakeDiscord, Invoker, Known, Place, BOT_ID,
};

impl FakeDiscord {
    fn place_and_invoker(&self, channel: u64, user: u64) -> (Place, Invoker) {
        let state = self.lock();
        let guild_id = state
            .channels
            .get(&channel)
            .map(|c| c.guild_id)
            .unwrap_or_else(|| panic!("no channel {channel}"));
        let member = state
            .guilds
            .get(&guild_id)
            .and_then(|g| g.members.get(&user))
            .unwrap_or_else(|| panic!("{user} is not a member of guild {guild_id}"));
        let invoker = Invoker {
            id: user,
            username: member.username.clone(),
            roles: member.roles.clone(),
            permissions: state.permissions_in(channel, user),
        };
        let place = Place {
            guild_id,
            channel_id: channel,
            app_permissions: state.permissions_in(channel, BOT_ID),
        };
        (place, invoker)
    }

    /// Puts the channel as this world has it, and the registered command's id, into a
    /// built interaction; the fake then knows it.
    fn finish(&self, mut interaction: Value) -> Value {
        let channel = id_of(&interaction["channel_id"]);
        {
            let state = self.lock();
            if let Some(c) = state.channels.get(&channel) {
                interaction["channel"]["name"] = json!(c.name);
                interaction["channel"]["type"] = json!(c.kind);
                if let Some(parent) = c.parent_id {
                    interaction["channel"]["parent_id"] = json!(parent.to_string());
                }
            }
            let guild = interaction["guild_id"]
                .as_str()
                .and_then(|g| g.parse().ok());
            let name = interaction["data"]["name"].as_str().unwrap_or_default();
            let registered = state
                .commands
                .get(&guild)
                .into_iter()
                .chain(state.commands.get(&None))
                .flatten()
                .find(|c| c["name"] == name)
                .map(|c| c["id"].clone());
            if let Some(id) = registered {
                interaction["data"]["id"] = id;
            }
        }
        self.register_interaction(&interaction);
        interaction
    }

    /// `/rollback <subcommand> [options]` typed by `user` in `channel`.
    pub fn command(
        &self,
        user: u64,
        channel: u64,
        subcommand: &str,
        options: &[(&str, &str)],
    ) -> Value {
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(command_interaction(&place, &invoker, subcommand, options))
    }

    /// Autocomplete while `user` types option `focused`.
    pub fn autocomplete(
        &self,
        user: u64,
        channel: u64,
        subcommand: &str,
        options: &[(&str, &str)],
        focused: &str,
    ) -> Value {
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(autocomplete_interaction(
            &place, &invoker, subcommand, options, focused,
        ))
    }

    /// `user` clicks button `custom_id` on a message the bot posted (the interaction carries
    /// the message as it is now).
    pub fn click(&self, user: u64, message: u64, custom_id: &str) -> Value {
        let message = self.message(message);
        let channel = id_of(&message["channel_id"]);
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(button_interaction(&place, &invoker, &message, custom_id))
    }

    /// `user` reacts with `emoji` to a message the bot posted (MESSAGE_REACTION_ADD payload).
    pub fn reaction(&self, user: u64, message: u64, emoji: &str) -> Value {
        let message = self.message(message);
        let channel = id_of(&message["channel_id"]);
        let (place, invoker) = self.place_and_invoker(channel, user);
        reaction_add(
            &place,
            &invoker,
            id_of(&message["id"]),
            id_of(&message["author"]["id"]),
            emoji,
        )
    }

    /// HTTP mode: Discord read `response` as the endpoint's answer to `interaction` (it takes
    /// the place of the callback call, with the same checks: the 3 s, one answer, the types
    /// allowed). Panics with Discord's error when Discord would have refused it.
    pub fn responded(&self, interaction: &Value, response: &Value) {
        let id = interaction["id"].as_str().expect("an interaction id");
        let token = interaction["token"].as_str().expect("an interaction token");
        if let Err(refused) = self.lock().callback(id, token, response) {
            panic!("Discord would refuse this response: {refused:?}");
        }
    }

    /// The fake knows an interaction (its id and token) from now on, e.g. one a test POSTs to
    /// an interactions endpoint itself. Knowing it again changes nothing.
    pub fn register_interaction(&self, interaction: &Value) {
        let id = id_of(&interaction["id"]);
        let known = Known {
            token: interaction["token"]
                .as_str()
                .expect("an interaction token")
                .to_owned(),
            kind: interaction["type"].as_u64().expect("an interaction type"),
            channel_id: id_of(&interaction["channel_id"]),
            guild_id: interaction["guild_id"]
                .as_str()
                .and_then(|g| g.parse().ok()),
            message_id: interaction["message"]["id"]
                .as_str()
                .and_then(|m| m.parse().ok()),
            name: interaction["data"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            user: interaction["member"]["user"].clone(),
            registered: Instant::now(),
            delivered: false,
            response: None,
            original: None,
            loading: false,
            followups: Vec::new(),
            expired: false,
        };
        self.lock().interactions.entry(id).or_insert(known);
    }

    /// Sends `INTERACTION_CREATE` on the newest session (waiting for one); sending the same
    /// interaction again is a duplicate delivery.
    pub fn dispatch_interaction(&self, interaction: &Value) {
        self.register_interaction(interaction);
        self.dispatch("INTERACTION_CREATE", interaction.clone(), 0);
        let id = id_of(&interaction["id"]);
        if let Some(known) = self.lock().interactions.get_mut(&id) {
            if !known.delivered {
                known.delivered = true;
                known.registered = Instant::now();
            }
        }
    }

    /// Sends `MESSAGE_REACTION_ADD` on the newest session (waiting for one), if the session's
    /// intents include GUILD_MESSAGE_REACTIONS (DIRECT_MESSAGE_REACTIONS outside guilds), as
    /// Discord does; false when it was filtered out.
    pub fn dispatch_reaction(&self, reaction: &Value) -> bool {
        let intent = if reaction["guild_id"].is_string() {
            1 << 10
        } else {
            1 << 13
        };
        self.dispatch("MESSAGE_REACTION_ADD", reaction.clone(), intent)
    }
}
