//! Chat text → [`Command`]: the platform-neutral `/rollback` grammar, parsed at the edge.
//!
//! ```text
//! /rollback IMAGE [REASON…]              roll back to the previous good build
//! /rollback IMAGE@sha256:… [REASON…]     … to this digest
//! /rollback IMAGE:TAG [REASON…]          … to what TAG points at
//! /rollback approve ID | reject ID [REASON…] | cancel ID
//! /rollback status [ID] | history IMAGE | release IMAGE [REASON…] | help
//! /rollback drill IMAGE [REASON…]        rehearse the rollback on a scratch repository
//! ```
//!
//! IMAGE is an alias from the config or `host[:port]/repository`. The leading `/rollback` is
//! optional (Slack delivers a slash command's text without it).

use std::fmt;

use super::model::{Digest, ImageRef, Reference, Tag};
use super::policy::Decision;
use super::rollback::RollbackId;

/// What someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Request {
        image: ImageName,
        target: Option<Reference>,
        reason: Option<String>,
    },
    Approve {
        id: RollbackId,
    },
    Reject {
        id: RollbackId,
        reason: Option<String>,
    },
    Cancel {
        id: RollbackId,
    },
    Status {
        id: Option<RollbackId>,
    },
    History {
        image: ImageName,
    },
    Release {
        image: ImageName,
        reason: Option<String>,
    },
    /// Rehearse the rollback `Request { image, target: None }` would make, on the image's
    /// scratch repository, through the same approval: production is never written.
    Drill {
        image: ImageName,
        reason: Option<String>,
    },
    Help,
    /// A vote by reaction on a message: the rollback is the one whose status message it is (in
    /// the channel the reaction came from), resolved by the engine. Never typed: the chat
    /// platform's reaction event carries the message reference.
    VoteOnMessage {
        decision: Decision,
        message: String,
    },
}

impl Command {
    /// The command's name: the `/rollback` verb (the subcommand on Discord), `reaction` for a
    /// vote by reaction. Metrics and the audit log name commands by it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Request { .. } => "request",
            Command::Drill { .. } => "drill",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Cancel { .. } => "cancel",
            Command::Status { .. } => "status",
            Command::History { .. } => "history",
            Command::Release { .. } => "release",
            Command::Help => "help",
            Command::VoteOnMessage { .. } => "reaction",
        }
    }

    /// An approval or a rejection (without a reason): what a button or a reaction means.
    pub fn vote(decision: Decision, id: RollbackId) -> Command {
        match decision {
            Decision::Approve => Command::Approve { id },
            Decision::Reject => Command::Reject { id, reason: None },
        }
    }

    /// The command as canonical chat text (for the audit log and echoes).
    pub fn to_text(&self) -> String {
        let with_reason = |base: String, reason: &Option<String>| match reason {
            Some(reason) => format!("{base} {reason}"),
            None => base,
        };
        match self {
            Command::Request {
                image,
                target,
                reason,
            } => {
                let target = match target {
                    Some(Reference::Tag(tag)) => format!(":{tag}"),
                    Some(Reference::Digest(digest)) => format!("@{digest}"),
                    None => String::new(),
                };
                with_reason(format!("/rollback {image}{target}"), reason)
            }
            Command::Approve { id } => format!("/rollback approve {id}"),
            Command::Reject { id, reason } => with_reason(format!("/rollback reject {id}"), reason),
            Command::Cancel { id } => format!("/rollback cancel {id}"),
            Command::Status { id: Some(id) } => format!("/rollback status {id}"),
            Command::Status { id: None } => "/rollback status".to_owned(),
            Command::History { image } => format!("/rollback history {image}"),
            Command::Release { image, reason } => {
                with_reason(format!("/rollback release {image}"), reason)
            }
            Command::Drill { image, reason } => {
                with_reason(format!("/rollback drill {image}"), reason)
            }
            Command::Help => "/rollback help".to_owned(),
            Command::VoteOnMessage { decision, message } => {
                let verb = match decision {
                    Decision::Approve => "approve",
                    Decision::Reject => "reject",
                };
                format!("(reaction: {verb} the rollback of message {message})")
            }
        }
    }
}

/// An image as typed: an alias to look up, or a full reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageName {
    Alias(String),
    Full(ImageRef),
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageName::Alias(alias) => f.write_str(alias),
            ImageName::Full(image) => write!(f, "{image}"),
        }
    }
}

/// Words that are subcommands, so they cannot be image aliases.
pub const RESERVED: &[&str] = &[
    "approve", "reject", "cancel", "status", "history", "release", "drill", "help",
];

/// The short usage text every malformed command gets back.
pub const USAGE: &str = "Usage:
/rollback IMAGE [reason…]   roll IMAGE back to the previous good build
/rollback IMAGE@sha256:… [reason…] or IMAGE:TAG [reason…]   roll back to that image
/rollback approve ID · reject ID [reason…] · cancel ID
/rollback status [ID] · history IMAGE · release IMAGE [reason…] · help
/rollback drill IMAGE [reason…]   rehearse the rollback on a scratch repository (production untouched)";

/// Why text is not a command; the message is shown to the user together with [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses one chat message.
///
/// # Errors
/// Empty text, a missing or malformed argument, or trailing words where none are allowed.
pub fn parse(text: &str) -> Result<Command, UsageError> {
    let text = text.trim();
    let text = text
        .strip_prefix("/rollback")
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        .unwrap_or(text)
        .trim();
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Err(UsageError("what should be rolled back?".to_owned()));
    };
    let rest: Vec<&str> = words.collect();
    let reason = |words: &[&str]| {
        let joined = words.join(" ");
        let trimmed: String = joined.chars().take(500).collect();
        (!trimmed.is_empty()).then_some(trimmed)
    };
    let id = |words: &[&str], verb: &str| -> Result<RollbackId, UsageError> {
        let word = words.first().ok_or_else(|| {
            UsageError(format!("`{verb}` needs a rollback id, like `{verb} rb-17`"))
        })?;
        word.parse::<RollbackId>().map_err(UsageError)
    };
    let no_more = |words: &[&str], verb: &str| -> Result<(), UsageError> {
        if words.is_empty() {
            Ok(())
        } else {
            Err(UsageError(format!(
                "`{verb}` takes no more words than that"
            )))
        }
    };
    match first.to_ascii_lowercase().as_str() {
        "help" => {
            no_more(&rest, "help")?;
            Ok(Command::Help)
        }
        "approve" => {
            let id = id(&rest, "approve")?;
            no_more(&rest[1..], "approve")?;
            Ok(Command::Approve { id })
        }
        "reject" => Ok(Command::Reject {
            id: id(&rest, "reject")?,
            reason: reason(&rest[1..]),
        }),
        "cancel" => {
            let id = id(&rest, "cancel")?;
            no_more(&rest[1..], "cancel")?;
            Ok(Command::Cancel { id })
        }
        "status" => match rest.as_slice() {
            [] => Ok(Command::Status { id: None }),
            [word] => Ok(Command::Status {
                id: Some(word.parse::<RollbackId>().map_err(UsageError)?),
            }),
            _ => Err(UsageError(
                "`status` takes at most one rollback id".to_owned(),
            )),
        },
        "history" => match rest.as_slice() {
            [image] => {
                let (image, reference) = image_spec(image)?;
                if reference.is_some() {
                    return Err(UsageError(
                        "`history` takes an image without tag or digest".to_owned(),
                    ));
                }
                Ok(Command::History { image })
            }
            _ => Err(UsageError("`history` needs exactly one image".to_owned())),
        },
        "release" => {
            let Some(image) = rest.first() else {
                return Err(UsageError("`release` needs an image".to_owned()));
            };
            let (image, reference) = image_spec(image)?;
            if reference.is_some() {
                return Err(UsageError(
                    "`release` takes an image without tag or digest".to_owned(),
                ));
            }
            Ok(Command::Release {
                image,
                reason: reason(&rest[1..]),
            })
        }
        "drill" => {
            let Some(image) = rest.first() else {
                return Err(UsageError("`drill` needs an image".to_owned()));
            };
            let (image, reference) = image_spec(image)?;
            if reference.is_some() {
                return Err(UsageError(
                    "`drill` takes an image without tag or digest: it rehearses the rollback to the previous good build".to_owned(),
                ));
            }
            Ok(Command::Drill {
                image,
                reason: reason(&rest[1..]),
            })
        }
        _ => {
            let (image, target) = image_spec(first)?;
            Ok(Command::Request {
                image,
                target,
                reason: reason(&rest),
            })
        }
    }
}

/// `alias`, `alias:tag`, `alias@sha256:…`, or the same with `host[:port]/repo`.
fn image_spec(word: &str) -> Result<(ImageName, Option<Reference>), UsageError> {
    if word.contains('/') {
        let (image, reference) =
            ImageRef::parse_with_reference(word).map_err(|e| UsageError(e.to_string()))?;
        return Ok((ImageName::Full(image), reference));
    }
    let (alias, reference) = if let Some((alias, digest)) = word.split_once('@') {
        let digest = Digest::parse(digest).map_err(|e| UsageError(e.to_string()))?;
        (alias, Some(Reference::Digest(digest)))
    } else if let Some((alias, tag)) = word.split_once(':') {
        let tag = Tag::parse(tag).map_err(|e| UsageError(e.to_string()))?;
        (alias, Some(Reference::Tag(tag)))
    } else {
        (word, None)
    };
    let valid = !alias.is_empty()
        && alias.len() <= 64
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(UsageError(format!(
            "'{}' is neither an image alias nor host/repository",
            word.chars().take(80).collect::<String>()
        )));
    }
    Ok((ImageName::Alias(alias.to_owned()), reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "c".repeat(64))
    }

    #[test]
    fn commands_parse_from_chat_text() {
        let d = digest();
        let cases: Vec<(String, Command)> = vec![
            (
                "/rollback app".into(),
                Command::Request {
                    image: ImageName::Alias("app".into()),
                    target: None,
                    reason: None,
                },
            ),
            (
                "app  CLI crashes on start ".into(),
                Command::Request {
                    image: ImageName::Alias("app".into()),
                    target: None,
                    reason: Some("CLI crashes on start".into()),
                },
            ),
            (
                format!("/rollback app@{d} bad build"),
                Command::Request {
                    image: ImageName::Alias("app".into()),
                    target: Some(Reference::Digest(Digest::parse(&d).expect("d"))),
                    reason: Some("bad build".into()),
                },
            ),
            (
                "/rollback app:v1.2.2".into(),
                Command::Request {
                    image: ImageName::Alias("app".into()),
                    target: Some(Reference::Tag(Tag::parse("v1.2.2").expect("t"))),
                    reason: None,
                },
            ),
            (
                "/rollback registry.example.com:5000/acme/app:v1 x".into(),
                Command::Request {
                    image: ImageName::Full(
                        ImageRef::parse("registry.example.com:5000/acme/app").expect("i"),
                    ),
                    target: Some(Reference::Tag(Tag::parse("v1").expect("t"))),
                    reason: Some("x".into()),
                },
            ),
            (
                "/rollback approve rb-3".into(),
                Command::Approve { id: RollbackId(3) },
            ),
            ("APPROVE 3".into(), Command::Approve { id: RollbackId(3) }),
            (
                "/rollback reject #4 not this one".into(),
                Command::Reject {
                    id: RollbackId(4),
                    reason: Some("not this one".into()),
                },
            ),
            (
                "/rollback cancel rb-5".into(),
                Command::Cancel { id: RollbackId(5) },
            ),
            ("/rollback status".into(), Command::Status { id: None }),
            (
                "/rollback status rb-6".into(),
                Command::Status {
                    id: Some(RollbackId(6)),
                },
            ),
            (
                "/rollback history app".into(),
                Command::History {
                    image: ImageName::Alias("app".into()),
                },
            ),
            (
                "/rollback release app fixed in v1.2.4".into(),
                Command::Release {
                    image: ImageName::Alias("app".into()),
                    reason: Some("fixed in v1.2.4".into()),
                },
            ),
            (
                "/rollback drill app quarterly drill".into(),
                Command::Drill {
                    image: ImageName::Alias("app".into()),
                    reason: Some("quarterly drill".into()),
                },
            ),
            (
                "DRILL registry.example.com/acme/app".into(),
                Command::Drill {
                    image: ImageName::Full(
                        ImageRef::parse("registry.example.com/acme/app").expect("i"),
                    ),
                    reason: None,
                },
            ),
            ("/rollback help".into(), Command::Help),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&text), Ok(expected.clone()), "{text}");
            // The canonical text parses back to the same command.
            assert_eq!(parse(&expected.to_text()), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_commands_get_a_short_reason_never_a_panic() {
        for (text, expected) in [
            ("", "what should be rolled back?"),
            ("/rollback", "what should be rolled back?"),
            ("/rollback approve", "`approve` needs a rollback id"),
            ("/rollback approve banana", "'banana' is not a rollback id"),
            ("/rollback approve 3 4", "takes no more words"),
            (
                "/rollback app@sha256:123",
                "digest 'sha256:123' is not valid",
            ),
            ("/rollback app:-x", "tag '-x' is not valid"),
            ("/rollback App!", "is neither an image alias"),
            ("/rollback history", "`history` needs exactly one image"),
            ("/rollback history app:v1", "without tag or digest"),
            ("/rollback status 1 2", "at most one"),
            ("/rollback drill", "`drill` needs an image"),
            ("/rollback drill app:v1", "without tag or digest"),
            (
                "/rollback drill app@sha256:123",
                "digest 'sha256:123' is not valid",
            ),
            ("/rollback acme/app", "must be a registry host"),
            ("/rollbackapp", "is not valid"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.0.contains(expected), "{text:?}: {error}");
        }
        // Arbitrary bytes never panic.
        for text in [
            "\u{0}",
            "💥",
            "/rollback 💥@💥",
            "a:b:c@d",
            "@",
            ":",
            "/rollback \t\n",
        ] {
            let _ = parse(text);
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Anything typed is a command or a clear usage error; nothing panics.
        #[test]
        fn any_text_is_a_command_or_a_usage_error(text in any::<String>()) {
            match parse(&text) {
                Ok(command) => {
                    // The canonical text of a command reads back as the same command.
                    prop_assert_eq!(parse(&command.to_text()), Ok(command));
                }
                Err(UsageError(message)) => {
                    prop_assert!(!message.trim().is_empty());
                    prop_assert!(message.len() < 400 + text.len() * 4, "{}", message);
                }
            }
        }

        /// Text shaped like commands (subcommand words, ids, digests, tags, reasons in any
        /// mix) round-trips or is refused; it never panics.
        #[test]
        fn command_shaped_text_round_trips_or_is_refused(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("/rollback".to_owned()),
                    proptest::sample::select(RESERVED).prop_map(str::to_owned),
                    "rb-[0-9]{1,20}",
                    "#?[0-9]{1,20}",
                    "[a-z][a-z0-9._-]{0,12}(:[A-Za-z0-9_.-]{1,20})?",
                    "[a-z]{1,8}@sha256:[0-9a-f]{60,66}",
                    "registry\\.example\\.com(:[0-9]{1,5})?/[a-z]{1,6}/[a-z]{1,6}",
                    "\\PC{0,12}",
                ],
                0..6,
            )
        ) {
            let text = words.join(" ");
            if let Ok(command) = parse(&text) {
                prop_assert_eq!(parse(&command.to_text()), Ok(command));
            }
        }
    }
}
