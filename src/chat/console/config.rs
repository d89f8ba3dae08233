//! `[console]`: whether the built-in console is on, its channel, its users, its history.

use serde::Deserialize;

use crate::config::{Checked, ConfigProblem, Layers, Problems};
use crate::domain::rollback::Actor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleMode {
    /// On when no chat platform is configured.
    Auto,
    #[serde(alias = "true")]
    On,
    #[serde(alias = "false")]
    Off,
}

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub mode: ConsoleMode,
    /// The name of the console's one channel.
    pub channel: String,
    /// The people who can use the console (it has no login: pick a user).
    pub users: Vec<Actor>,
    /// How many messages the channel keeps in memory (the oldest go first).
    pub history: u32,
}

/// `[console]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleSection {
    enabled: Checked<ConsoleMode>,
    channel: Checked<String>,
    users: Checked<Vec<Checked<UserSection>>>,
    history: Checked<i64>,
}

/// One `[[console.users]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSection {
    id: Checked<String>,
    name: Checked<String>,
    groups: Checked<Vec<String>>,
}

impl ConsoleSettings {
    /// Reads `[console]`.
    ///
    /// # Errors
    /// Every problem of the section.
    pub fn read(layers: &Layers) -> Result<ConsoleSettings, Vec<ConfigProblem>> {
        layers.read("console", validate)
    }
}

fn validate(section: ConsoleSection) -> Result<ConsoleSettings, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let mode = problems.required(&section.enabled);
    let channel = problems.required(&section.channel);
    let history = problems.number(&section.history, 10, 100_000);
    let users = match section.users.is_set() {
        true => problems
            .get(&section.users)
            .map(|users| self::users(users, &mut problems))
            .unwrap_or_default(),
        false => Vec::new(),
    };
    let settings = || {
        Some(ConsoleSettings {
            mode: mode?,
            channel: channel?,
            users,
            history: history?,
        })
    };
    problems.finish(settings())
}

fn users(entries: &[Checked<UserSection>], problems: &mut Problems) -> Vec<Actor> {
    let mut users: Vec<Actor> = Vec::new();
    for entry in entries {
        let Some(user) = problems.get(entry) else {
            continue;
        };
        let id = problems.required(&user.id);
        let name = problems.optional(&user.name);
        let groups = problems.optional(&user.groups).unwrap_or_default();
        let Some(id) = id else { continue };
        if id.is_empty() || id.starts_with("group:") {
            problems.add(&user.id, "a user id cannot be empty or start with group:");
            continue;
        }
        if users.iter().any(|u| u.id == id) {
            problems.add(&user.id, format!("user '{id}' is listed twice"));
            continue;
        }
        users.push(Actor {
            name: name.unwrap_or_else(|| id.clone()),
            id,
            groups,
        });
    }
    users
}
