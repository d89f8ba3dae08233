//! The `/rollback` command as Discord sees it: its definition (subcommands with the same verbs
//! as Slack's text, options with autocomplete), registered by bulk overwrite; an invocation's
//! options back into the one `/rollback` grammar (`domain::command`); autocomplete answers.

use serenity::all::{
    CommandData, CommandOptionType, CreateCommand, CreateCommandOption, ResolvedOption,
    ResolvedValue,
};

use crate::domain::command::{self, Command};
use crate::domain::rollback::RollbackId;

/// The command's name.
pub const NAME: &str = "rollback";
/// Discord's limit on autocomplete choices.
pub const MAX_CHOICES: usize = 25;

/// An option of a subcommand.
struct Opt {
    name: &'static str,
    what: &'static str,
    required: bool,
    /// What autocomplete offers: image aliases or active rollback ids.
    complete: Option<Complete>,
    max_length: u16,
}

/// What an option's autocomplete offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complete {
    Images,
    Rollbacks,
}

const IMAGE: Opt = Opt {
    name: "image",
    what: "An image alias from rollbot's config, or host/repository[:tag|@sha256:…]",
    required: true,
    complete: Some(Complete::Images),
    max_length: 300,
};
const ID: Opt = Opt {
    name: "id",
    what: "The rollback, like rb-17",
    required: true,
    complete: Some(Complete::Rollbacks),
    max_length: 30,
};
const REASON: Opt = Opt {
    name: "reason",
    what: "Why (shown in the plan, the thread and the audit log)",
    required: false,
    complete: None,
    max_length: 500,
};

/// The subcommands: name, description, options (in the grammar's order).
const SUBCOMMANDS: &[(&str, &str, &[Opt])] = &[
    (
        "request",
        "Roll an image back to its previous good build (or to image:tag / image@digest)",
        &[IMAGE, REASON],
    ),
    (
        "approve",
        "Approve a rollback someone else requested",
        &[ID],
    ),
    (
        "reject",
        "Reject a rollback (one approver's reject vetoes it)",
        &[ID, REASON],
    ),
    (
        "cancel",
        "Cancel your own rollback request before it runs",
        &[ID],
    ),
    (
        "status",
        "Rollbacks in progress, or one of them",
        &[Opt {
            required: false,
            ..ID
        }],
    ),
    (
        "history",
        "The builds an image's tags went through",
        &[IMAGE],
    ),
    (
        "release",
        "Release the hold after a rollback so CI may move the tags again",
        &[IMAGE, REASON],
    ),
    (
        "drill",
        "Rehearse an image's rollback on a scratch repository (DRILL: production only read)",
        &[
            Opt {
                what: "An image alias from rollbot's config, or host/repository",
                ..IMAGE
            },
            REASON,
        ],
    ),
    ("help", "How /rollback works", &[]),
];

/// The `/rollback` command, for `PUT /applications/{app}/guilds/{guild}/commands`.
pub fn definition() -> CreateCommand {
    let mut command = CreateCommand::new(NAME).description(
        "Roll container image tags back to a known-good build, with a second person's approval",
    );
    for (name, description, options) in SUBCOMMANDS {
        let mut sub = CreateCommandOption::new(CommandOptionType::SubCommand, *name, *description);
        for option in *options {
            let mut built =
                CreateCommandOption::new(CommandOptionType::String, option.name, option.what)
                    .required(option.required)
                    .max_length(option.max_length);
            if option.complete.is_some() {
                built = built.set_autocomplete(true);
            }
            sub = sub.add_sub_option(built);
        }
        command = command.add_option(sub);
    }
    command
}

/// The options of an invocation as `/rollback` text: the subcommand's verb (none for
/// `request`) and its values in the grammar's order. Values that must be one word (an image,
/// an id) and are not get a usage error instead of being run together with the next.
///
/// # Errors
/// The usage error to show (with [`command::USAGE`]).
pub fn text_of(data: &CommandData) -> Result<String, String> {
    let options = data.options();
    let Some(ResolvedOption {
        name: verb,
        value: ResolvedValue::SubCommand(values),
        ..
    }) = options.first()
    else {
        return Err("pick a subcommand: /rollback request, approve, reject, …".to_owned());
    };
    let Some((_, _, expected)) = SUBCOMMANDS.iter().find(|(name, _, _)| name == verb) else {
        return Err(format!("'{verb}' is not a /rollback subcommand"));
    };
    let mut words = Vec::new();
    if *verb != "request" {
        words.push((*verb).to_owned());
    }
    for option in *expected {
        let value = values
            .iter()
            .find_map(|v| match (v.name == option.name, &v.value) {
                (true, ResolvedValue::String(text)) => Some(*text),
                _ => None,
            });
        match value {
            Some(text) if option.name == REASON.name => {
                let text = text.trim();
                if !text.is_empty() {
                    words.push(text.to_owned());
                }
            }
            Some(text) => {
                let text = text.trim();
                if text.is_empty() || text.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "{} must be one word, like web or rb-17",
                        option.name
                    ));
                }
                words.push(text.to_owned());
            }
            None if option.required => return Err(format!("{} is missing", option.name)),
            None => {}
        }
    }
    Ok(words.join(" "))
}

/// The invocation as a [`Command`], or what to tell the person (help, or a usage error with
/// the usage text): like Slack's text, through the one grammar.
///
/// # Errors
/// The reply to send instead; `malformed` is `Some(why)` when it was a usage error (counted
/// and audited like any command).
pub fn interpret(data: &CommandData) -> Result<Command, (String, Option<String>)> {
    let text = text_of(data).map_err(|why| (format!("{why}\n{}", command::USAGE), Some(why)))?;
    let usage = |why: String| (format!("{why}\n{}", command::USAGE), Some(why));
    let subcommand = data.options().first().map(|o| o.name).unwrap_or_default();
    match command::parse(&text) {
        // The text is rebuilt from the options, so a value can read as another verb (a
        // request for an image named `approve`): only the subcommand's own verb runs.
        Ok(command) if command.name() != subcommand => Err(usage(format!(
            "'{}' cannot be an image: it is a /rollback subcommand",
            text.split_whitespace().next().unwrap_or_default()
        ))),
        Ok(Command::Help) => Err((command::USAGE.to_owned(), None)),
        Ok(command) => Ok(command),
        Err(error) => Err(usage(error.to_string())),
    }
}

/// What the focused option of an autocomplete interaction offers, and what was typed so far.
pub fn focused(data: &CommandData) -> Option<(Complete, String)> {
    let focused = data.autocomplete()?;
    let complete = match focused.name {
        "image" => Complete::Images,
        "id" => Complete::Rollbacks,
        _ => return None,
    };
    Some((complete, focused.value.to_owned()))
}

/// Up to [`MAX_CHOICES`] of `candidates` that match what was typed (case-insensitively, those
/// starting with it first), each within Discord's 100-character limit.
pub fn choices<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let typed = typed.trim().to_lowercase();
    let mut starting = Vec::new();
    let mut containing = Vec::new();
    for candidate in candidates {
        if candidate.is_empty() || candidate.len() > 100 {
            continue;
        }
        let lower = candidate.to_lowercase();
        if lower.starts_with(&typed) {
            starting.push(candidate.to_owned());
        } else if lower.contains(&typed) {
            containing.push(candidate.to_owned());
        }
    }
    starting.sort();
    containing.sort();
    starting.extend(containing);
    starting.dedup();
    starting.truncate(MAX_CHOICES);
    starting
}

/// The rollback ids to offer, newest first.
pub fn rollback_choices(typed: &str, mut ids: Vec<RollbackId>) -> Vec<String> {
    ids.sort_by(|a, b| b.cmp(a));
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let typed = typed.trim().to_lowercase();
    texts
        .into_iter()
        .filter(|id| id.contains(&typed))
        .take(MAX_CHOICES)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// Command data as Discord sends it for `/rollback <verb> name:value…`.
    fn data(verb: &str, options: &[(&str, &str)]) -> CommandData {
        let options: Vec<Value> = options
            .iter()
            .map(|(name, value)| json!({ "name": name, "type": 3, "value": value }))
            .collect();
        serde_json::from_value(json!({
            "id": "1100000000000000001",
            "name": "rollback",
            "type": 1,
            "options": [{ "name": verb, "type": 1, "options": options }],
        }))
        .expect("command data")
    }

    /// A subcommand, its options, and the text they read back as.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn subcommands_read_back_as_the_grammar_reads_them() {
        let cases: &[Case<'_>] = &[
            ("request", &[("image", "web")], "web"),
            (
                "request",
                &[("image", "web"), ("reason", " 500s on /login ")],
                "web 500s on /login",
            ),
            (
                "request",
                &[("image", "web:v1.2.3"), ("reason", "")],
                "web:v1.2.3",
            ),
            ("approve", &[("id", "rb-17")], "approve rb-17"),
            (
                "reject",
                &[("id", "rb-17"), ("reason", "not this build")],
                "reject rb-17 not this build",
            ),
            ("cancel", &[("id", "rb-3")], "cancel rb-3"),
            ("status", &[], "status"),
            ("status", &[("id", "rb-3")], "status rb-3"),
            ("history", &[("image", "web")], "history web"),
            (
                "release",
                &[("image", "web"), ("reason", "fixed in v1.2.4")],
                "release web fixed in v1.2.4",
            ),
            (
                "drill",
                &[("image", "web"), ("reason", "quarterly drill")],
                "drill web quarterly drill",
            ),
            ("help", &[], "help"),
        ];
        for (verb, options, expected) in cases {
            assert_eq!(
                text_of(&data(verb, options)).as_deref(),
                Ok(*expected),
                "{verb} {options:?}"
            );
        }
        assert_eq!(
            interpret(&data("approve", &[("id", "rb-17")])).expect("command"),
            Command::Approve { id: RollbackId(17) }
        );
        assert!(
            matches!(interpret(&data("help", &[])), Err((usage, None)) if usage == command::USAGE)
        );
    }

    #[test]
    fn a_value_that_would_run_into_the_next_word_is_a_usage_error() {
        for (verb, options) in [
            ("request", &[("image", "web approve")][..]),
            ("approve", &[("id", "rb-1 rb-2")][..]),
            ("request", &[("image", "  ")][..]),
            ("history", &[][..]),
        ] {
            let (reply, malformed) = interpret(&data(verb, options)).expect_err("usage error");
            assert!(reply.ends_with(command::USAGE), "{reply}");
            assert!(malformed.is_some(), "{verb}: a usage error is counted");
        }
        let (reply, _) = interpret(&data("approve", &[("id", "seventeen")])).expect_err("bad id");
        assert!(reply.contains("seventeen"), "{reply}");
        let (reply, _) = interpret(&data("frobnicate", &[])).expect_err("unknown verb");
        assert!(
            reply.starts_with("'frobnicate' is not a /rollback subcommand"),
            "{reply}"
        );
    }

    #[test]
    fn a_subcommand_runs_only_its_own_verb_whatever_its_values_say() {
        // `request` puts the image first, where the grammar looks for a verb: an image named
        // like a verb (or `/rollback`) must not turn a request into an approval, a release…
        for options in [
            &[("image", "approve"), ("reason", "rb-1")][..],
            &[("image", "CANCEL"), ("reason", "rb-1")][..],
            &[("image", "release"), ("reason", "web")][..],
            &[("image", "/rollback"), ("reason", "approve rb-1")][..],
            &[("image", "help")][..],
        ] {
            let (_, malformed) = interpret(&data("request", options))
                .expect_err("a request whose image is a verb is no request");
            assert!(malformed.is_some(), "{options:?}: counted as a usage error");
        }
    }

    #[test]
    fn the_definition_has_every_verb_of_the_grammar_within_discords_limits() {
        let value = serde_json::to_value(definition()).expect("json");
        assert_eq!(value["name"], "rollback");
        let subs = value["options"].as_array().expect("subcommands");
        let names: Vec<&str> = subs.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "request", "approve", "reject", "cancel", "status", "history", "release", "drill",
                "help"
            ]
        );
        for verb in command::RESERVED {
            assert!(names.contains(verb), "{verb}");
        }
        for sub in subs {
            assert_eq!(sub["type"], 1);
            assert!(sub["description"].as_str().expect("description").len() <= 100);
            for option in sub["options"].as_array().into_iter().flatten() {
                assert_eq!(option["type"], 3);
                assert!(option["description"].as_str().expect("description").len() <= 100);
                // Autocomplete may not be combined with choices.
                assert!(
                    option.get("choices").is_none()
                        || option["choices"].as_array().is_some_and(Vec::is_empty)
                );
            }
        }
        let request = &subs[0]["options"];
        assert_eq!(request[0]["name"], "image");
        assert_eq!(request[0]["required"], true);
        assert_eq!(request[0]["autocomplete"], true);
        assert_eq!(request[1]["name"], "reason");
        assert_eq!(request[1]["required"], false);
    }

    #[test]
    fn choices_match_what_was_typed_starting_matches_first_at_most_25() {
        let aliases = ["web", "worker", "api", "web-admin", "cron"];
        assert_eq!(choices("w", aliases), ["web", "web-admin", "worker"]);
        assert_eq!(choices("ADM", aliases), ["web-admin"]);
        assert_eq!(
            choices("", aliases),
            ["api", "cron", "web", "web-admin", "worker"]
        );
        let many: Vec<String> = (0..40).map(|i| format!("svc{i:02}")).collect();
        assert_eq!(
            choices("svc", many.iter().map(String::as_str)).len(),
            MAX_CHOICES
        );
        let ids = vec![RollbackId(3), RollbackId(17), RollbackId(12)];
        assert_eq!(
            rollback_choices("", ids.clone()),
            ["rb-17", "rb-12", "rb-3"]
        );
        assert_eq!(rollback_choices("1", ids), ["rb-17", "rb-12"]);
    }
}
