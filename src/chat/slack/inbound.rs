//! Slack input parsed at the edge: slash-command form bodies, interaction payloads, Events API
//! bodies and Socket Mode frames become typed values or a [`PayloadError`] that says what is
//! wrong. Ids are checked here (Slack ids are ASCII letters and digits; keys and timestamps are
//! printable ASCII), so nothing odd reaches a mention, an API call or an idempotency key.
//!
//! Payload shapes are slack-morphism's models; everything else in a payload (`message`,
//! `state`, …) is read by them and then ignored.

use serde_json::Value;
use slack_morphism::prelude::*;

use super::SlackInput;

/// Why a Slack payload was not taken. The text is for the log and the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("{what}: {field} is missing")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what}: {field} is not a Slack id (ASCII letters and digits)")]
    BadId {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what}: {field} is not printable ASCII without spaces")]
    BadKey {
        what: &'static str,
        field: &'static str,
    },
    #[error("unreadable {what}: {reason}")]
    Unreadable { what: &'static str, reason: String },
}

/// Longest id, key or timestamp accepted (Slack's are far shorter).
const MAX_ID: usize = 255;

/// A Slack id (`U…`, `C…`, `T…`): ASCII letters and digits only, so it can sit inside `<@…>`.
fn slack_id(what: &'static str, field: &'static str, value: &str) -> Result<String, PayloadError> {
    if !value.is_empty()
        && value.len() <= MAX_ID
        && value.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        Ok(value.to_owned())
    } else {
        Err(PayloadError::BadId { what, field })
    }
}

/// A key, timestamp or action id: printable ASCII without spaces.
fn key(what: &'static str, field: &'static str, value: &str) -> Result<String, PayloadError> {
    if !value.is_empty() && value.len() <= MAX_ID && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err(PayloadError::BadKey { what, field })
    }
}

fn unreadable(what: &'static str, error: impl std::fmt::Display) -> PayloadError {
    PayloadError::Unreadable {
        what,
        reason: error.to_string(),
    }
}

/// A `/rollback` invocation, from either connection mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub channel: String,
    pub user: String,
    /// What the person typed after `/rollback`, exactly.
    pub text: String,
    /// Slack's trigger id: a redelivered command has the same one.
    pub trigger: String,
}

const COMMAND: &str = "slash command";

impl SlashCommand {
    /// HTTP mode: the `application/x-www-form-urlencoded` body Slack posts.
    ///
    /// # Errors
    /// `channel_id`, `user_id` or `trigger_id` missing or malformed.
    pub fn from_form(body: &[u8]) -> Result<SlashCommand, PayloadError> {
        let fields = form(body);
        let field = |name: &'static str| {
            form_field(&fields, name).ok_or(PayloadError::Missing {
                what: COMMAND,
                field: name,
            })
        };
        Ok(SlashCommand {
            channel: slack_id(COMMAND, "channel_id", field("channel_id")?)?,
            user: slack_id(COMMAND, "user_id", field("user_id")?)?,
            trigger: key(COMMAND, "trigger_id", field("trigger_id")?)?,
            text: form_field(&fields, "text").unwrap_or_default().to_owned(),
        })
    }

    /// Socket Mode: the payload of a `slash_commands` envelope.
    ///
    /// # Errors
    /// A malformed channel, user or trigger id.
    pub fn from_event(event: &SlackCommandEvent) -> Result<SlashCommand, PayloadError> {
        Ok(SlashCommand {
            channel: slack_id(COMMAND, "channel_id", event.channel_id.as_ref())?,
            user: slack_id(COMMAND, "user_id", event.user_id.as_ref())?,
            trigger: key(COMMAND, "trigger_id", event.trigger_id.as_ref())?,
            text: event.text.clone().unwrap_or_default(),
        })
    }
}

/// The fields of a form body, in order.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `name`, if any.
pub fn form_field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

const INTERACTION: &str = "interaction payload";

/// HTTP mode: the form body of `/slack/interactions` (one `payload` field of JSON).
///
/// # Errors
/// No `payload` field, unreadable JSON, or a `block_actions` payload [`interaction_inputs`]
/// refuses.
pub fn interaction_form(body: &[u8]) -> Result<Vec<SlackInput>, PayloadError> {
    let fields = form(body);
    let payload = form_field(&fields, "payload").ok_or(PayloadError::Missing {
        what: INTERACTION,
        field: "payload",
    })?;
    let event = serde_json::from_str::<SlackInteractionEvent>(payload)
        .map_err(|e| unreadable(INTERACTION, e))?;
    interaction_inputs(&event)
}

/// Button clicks in a `block_actions` interaction; other interactions are not ours (none).
///
/// # Errors
/// A `block_actions` payload without a user or a channel, or with malformed ids.
pub fn interaction_inputs(event: &SlackInteractionEvent) -> Result<Vec<SlackInput>, PayloadError> {
    let SlackInteractionEvent::BlockActions(actions) = event else {
        return Ok(Vec::new());
    };
    let user = actions.user.as_ref().ok_or(PayloadError::Missing {
        what: INTERACTION,
        field: "user",
    })?;
    let channel = actions
        .channel
        .as_ref()
        .map(|c| c.id.to_string())
        .or_else(|| match &actions.container {
            SlackInteractionActionContainer::Message(message) => {
                message.channel_id.as_ref().map(ToString::to_string)
            }
            _ => None,
        })
        .ok_or(PayloadError::Missing {
            what: INTERACTION,
            field: "channel",
        })?;
    let channel = slack_id(INTERACTION, "channel.id", &channel)?;
    let user_id = slack_id(INTERACTION, "user.id", user.id.as_ref())?;
    let trigger = key(INTERACTION, "trigger_id", actions.trigger_id.as_ref())?;
    let name = user
        .username
        .clone()
        .or_else(|| user.name.clone())
        .unwrap_or_else(|| user_id.clone());
    actions
        .actions
        .iter()
        .flatten()
        .map(|action| {
            let action = key(
                INTERACTION,
                "actions[].action_id",
                action.action_id.as_ref(),
            )?;
            Ok(SlackInput::Action {
                channel: channel.clone(),
                user: user_id.clone(),
                user_name: name.clone(),
                key: format!("{trigger}:{action}"),
                action,
            })
        })
        .collect()
}

const EVENT: &str = "event";

/// What an Events API body (HTTP mode) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// Slack checking the endpoint: answer with the challenge.
    UrlVerification { challenge: String },
    /// An event callback: a reaction we act on, or nothing.
    Input(Option<SlackInput>),
    /// Another kind of body (app rate limiting notices and the like).
    Other,
}

/// HTTP mode: the JSON body of `/slack/events`.
///
/// # Errors
/// Unreadable JSON, or a `reaction_added` event [`event_input`] refuses.
pub fn event_body(body: &[u8]) -> Result<EventBody, PayloadError> {
    match serde_json::from_slice::<SlackPushEvent>(body).map_err(|e| unreadable(EVENT, e))? {
        SlackPushEvent::UrlVerification(verification) => Ok(EventBody::UrlVerification {
            challenge: verification.challenge,
        }),
        SlackPushEvent::EventCallback(event) => event_input(&event).map(EventBody::Input),
        _ => Ok(EventBody::Other),
    }
}

/// A `reaction_added` on a message; other events are not ours (`None`).
///
/// # Errors
/// A `reaction_added` event with malformed ids, or on a message without a channel.
pub fn event_input(event: &SlackPushEventCallback) -> Result<Option<SlackInput>, PayloadError> {
    let SlackEventCallbackBody::ReactionAdded(reaction) = &event.event else {
        return Ok(None);
    };
    let SlackReactionsItem::Message(message) = &reaction.item else {
        return Ok(None);
    };
    let channel = message
        .origin
        .channel
        .as_ref()
        .ok_or(PayloadError::Missing {
            what: EVENT,
            field: "event.item.channel",
        })?;
    Ok(Some(SlackInput::Reaction {
        channel: slack_id(EVENT, "event.item.channel", channel.as_ref())?,
        user: slack_id(EVENT, "event.user", reaction.user.as_ref())?,
        reaction: key(EVENT, "event.reaction", reaction.reaction.as_ref())?,
        ts: key(EVENT, "event.item.ts", message.origin.ts.as_ref())?,
        key: key(EVENT, "event_id", event.event_id.as_ref())?,
    }))
}

/// One Socket Mode frame from Slack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The connection is ready.
    Hello,
    /// Slack will close this connection (`refresh_requested`, `warning`, `link_disabled`, …).
    Disconnect {
        reason: String,
    },
    Envelope(Envelope),
}

/// An envelope, to be acknowledged by its id within 3 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    /// 0 on first delivery; Slack counts up when it redelivers the same envelope.
    pub retry_attempt: u64,
    pub retry_reason: Option<String>,
    pub body: Result<EnvelopeBody, PayloadError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeBody {
    /// Answered in the acknowledgement.
    Command(SlashCommand),
    Inputs(Vec<SlackInput>),
    /// An envelope type rollbot does not use; acknowledged and dropped.
    Other(String),
}

const FRAME: &str = "Socket Mode frame";

/// Parses a text frame. An envelope whose payload is unreadable still parses (its body is
/// the error), so it can be acknowledged: it would not read better when redelivered.
///
/// # Errors
/// Not a JSON object, no `type`, or an unknown frame type without an envelope id.
pub fn frame(text: &str) -> Result<Frame, PayloadError> {
    let value = serde_json::from_str::<Value>(text).map_err(|e| unreadable(FRAME, e))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or(PayloadError::Missing {
            what: FRAME,
            field: "type",
        })?;
    match kind {
        "hello" => return Ok(Frame::Hello),
        "disconnect" => {
            let reason = value.get("reason").and_then(Value::as_str).unwrap_or("");
            return Ok(Frame::Disconnect {
                reason: reason.chars().take(MAX_ID).collect(),
            });
        }
        _ => {}
    }
    let id = value
        .get("envelope_id")
        .and_then(Value::as_str)
        .ok_or(PayloadError::Missing {
            what: FRAME,
            field: "envelope_id",
        })
        .and_then(|id| key(FRAME, "envelope_id", id))?;
    let payload = value.get("payload").cloned().unwrap_or(Value::Null);
    let body = match kind {
        "slash_commands" => serde_json::from_value::<SlackCommandEvent>(payload)
            .map_err(|e| unreadable(COMMAND, e))
            .and_then(|event| SlashCommand::from_event(&event))
            .map(EnvelopeBody::Command),
        "interactive" => serde_json::from_value::<SlackInteractionEvent>(payload)
            .map_err(|e| unreadable(INTERACTION, e))
            .and_then(|event| interaction_inputs(&event))
            .map(EnvelopeBody::Inputs),
        "events_api" => serde_json::from_value::<SlackPushEventCallback>(payload)
            .map_err(|e| unreadable(EVENT, e))
            .and_then(|event| event_input(&event))
            .map(|input| EnvelopeBody::Inputs(input.into_iter().collect())),
        other => Ok(EnvelopeBody::Other(other.chars().take(MAX_ID).collect())),
    };
    Ok(Frame::Envelope(Envelope {
        id,
        retry_attempt: value
            .get("retry_attempt")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        retry_reason: value
            .get("retry_reason")
            .and_then(Value::as_str)
            .filter(|reason| !reason.is_empty())
            .map(|reason| reason.chars().take(MAX_ID).collect()),
        body,
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn command_payload(text: &str) -> Value {
        json!({
            "token": "verification-token", "team_id": "T0ACME0001", "team_domain": "acme",
            "channel_id": "C0RELEASES", "channel_name": "releases", "user_id": "U0ALICE001",
            "user_name": "alice", "command": "/rollback", "text": text, "api_app_id": "A0APP00001",
            "response_url": "https://hooks.slack.com/commands/T0ACME0001/1/x",
            "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
        })
    }

    fn envelope(kind: &str, payload: Value) -> String {
        json!({ "envelope_id": "e1", "type": kind, "accepts_response_payload": true, "payload": payload })
            .to_string()
    }

    /// A `block_actions` payload as Slack sends it: with the clicked `message` and its `state`.
    fn click_payload(user: &str, action: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": user, "username": "bob", "name": "bob", "team_id": "T0ACME0001" },
            "api_app_id": "A0APP00001", "token": "verification-token",
            "container": { "type": "message", "message_ts": "1700000000.000101", "channel_id": "C0RELEASES", "is_ephemeral": false },
            "trigger_id": "123.456.abc", "team": { "id": "T0ACME0001", "domain": "acme" },
            "enterprise": null, "is_enterprise_install": false,
            "channel": { "id": "C0RELEASES", "name": "releases" },
            "message": {
                "type": "message", "user": "UBOT000001", "bot_id": "B0BOT00001", "app_id": "A0APP00001",
                "team": "T0ACME0001", "ts": "1700000000.000101", "text": "rb-1 needs approval",
                "blocks": [
                    { "type": "section", "block_id": "Xa1", "text": { "type": "mrkdwn", "text": "*rb-1*", "verbatim": false } },
                    { "type": "actions", "block_id": "Xa2", "elements": [{
                        "type": "button", "action_id": action, "value": action, "style": "primary",
                        "text": { "type": "plain_text", "text": "Approve", "emoji": true }
                    }] }
                ]
            },
            "state": { "values": {} },
            "response_url": "https://hooks.slack.com/actions/T0ACME0001/1/x",
            "actions": [{
                "action_id": action, "block_id": "Xa2", "type": "button", "value": action, "style": "primary",
                "text": { "type": "plain_text", "text": "Approve", "emoji": true }, "action_ts": "1700000001.000100"
            }]
        })
    }

    #[test]
    fn frames_of_each_documented_kind_parse() {
        let hello = r#"{"type":"hello","num_connections":2,"debug_info":{"host":"applink-1","build_number":10,"approximate_connection_time":18060},"connection_info":{"app_id":"A111"}}"#;
        assert_eq!(frame(hello), Ok(Frame::Hello));
        let disconnect = r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"applink-1"}}"#;
        assert_eq!(
            frame(disconnect),
            Ok(Frame::Disconnect {
                reason: "refresh_requested".into()
            })
        );
        let Ok(Frame::Envelope(command)) = frame(&envelope(
            "slash_commands",
            command_payload("app v3 crashes"),
        )) else {
            panic!("a slash command envelope");
        };
        assert_eq!(command.id, "e1");
        assert_eq!(
            command.body,
            Ok(EnvelopeBody::Command(SlashCommand {
                channel: "C0RELEASES".into(),
                user: "U0ALICE001".into(),
                text: "app v3 crashes".into(),
                trigger: "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c".into(),
            }))
        );
        let Ok(Frame::Envelope(click)) = frame(&envelope(
            "interactive",
            click_payload("U0BOB00001", "approve:rb-1"),
        )) else {
            panic!("an interactive envelope");
        };
        assert_eq!(
            click.body,
            Ok(EnvelopeBody::Inputs(vec![SlackInput::Action {
                channel: "C0RELEASES".into(),
                user: "U0BOB00001".into(),
                user_name: "bob".into(),
                action: "approve:rb-1".into(),
                key: "123.456.abc:approve:rb-1".into(),
            }]))
        );
        let reaction = json!({
            "envelope_id": "e2", "type": "events_api", "accepts_response_payload": false,
            "retry_attempt": 1, "retry_reason": "timeout",
            "payload": {
                "token": "x", "team_id": "T0ACME0001", "api_app_id": "A0APP00001", "type": "event_callback",
                "event_id": "Ev0001", "event_time": 1_700_000_002,
                "event": { "type": "reaction_added", "user": "U0CAROL001", "reaction": "white_check_mark",
                    "item_user": "UBOT000001", "item": { "type": "message", "channel": "C0RELEASES", "ts": "1700000000.000101" },
                    "event_ts": "1700000002.000100" }
            }
        });
        let Ok(Frame::Envelope(reaction)) = frame(&reaction.to_string()) else {
            panic!("an events_api envelope");
        };
        assert_eq!(
            (reaction.retry_attempt, reaction.retry_reason.as_deref()),
            (1, Some("timeout"))
        );
        assert_eq!(
            reaction.body,
            Ok(EnvelopeBody::Inputs(vec![SlackInput::Reaction {
                channel: "C0RELEASES".into(),
                user: "U0CAROL001".into(),
                reaction: "white_check_mark".into(),
                ts: "1700000000.000101".into(),
                key: "Ev0001".into(),
            }]))
        );
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let mut no_user = command_payload("status");
        no_user.as_object_mut().map(|o| o.remove("user_id"));
        let mut mention = command_payload("status");
        mention["user_id"] = json!("U1> <!channel");
        let mut clicker = click_payload("U0BOB00001", "approve:rb-1");
        clicker.as_object_mut().map(|o| o.remove("user"));
        let cases: Vec<(&str, String, &str)> = vec![
            ("not json", "{".into(), "unreadable Socket Mode frame"),
            (
                "no type",
                r#"{"envelope_id":"e1"}"#.into(),
                "Socket Mode frame: type is missing",
            ),
            (
                "no envelope id",
                r#"{"type":"events_api"}"#.into(),
                "Socket Mode frame: envelope_id is missing",
            ),
            (
                "spaces in the envelope id",
                r#"{"type":"events_api","envelope_id":"a b"}"#.into(),
                "Socket Mode frame: envelope_id is not printable ASCII",
            ),
            (
                "command without user",
                envelope("slash_commands", no_user),
                "unreadable slash command",
            ),
            (
                "markup in a user id",
                envelope("slash_commands", mention),
                "slash command: user_id is not a Slack id",
            ),
            (
                "click without user",
                envelope("interactive", clicker),
                "interaction payload: user is missing",
            ),
            (
                "interactive without payload",
                r#"{"type":"interactive","envelope_id":"e1"}"#.into(),
                "unreadable interaction payload",
            ),
        ];
        for (name, text, expected) in cases {
            let error = match frame(&text) {
                Err(error) => error.to_string(),
                Ok(Frame::Envelope(Envelope {
                    body: Err(error), ..
                })) => error.to_string(),
                Ok(other) => panic!("{name}: parsed as {other:?}"),
            };
            assert!(error.contains(expected), "{name}: {error}");
        }
        let form_cases: Vec<(&str, &str, &str)> = vec![
            ("empty", "", "slash command: channel_id is missing"),
            (
                "no trigger",
                "channel_id=C1&user_id=U1",
                "slash command: trigger_id is missing",
            ),
            (
                "markup in a channel",
                "channel_id=C1%3E&user_id=U1&trigger_id=t",
                "slash command: channel_id is not a Slack id (ASCII letters and digits)",
            ),
            (
                "a space in the trigger",
                "channel_id=C1&user_id=U1&trigger_id=t+1",
                "slash command: trigger_id is not printable ASCII without spaces",
            ),
        ];
        for (name, body, expected) in form_cases {
            let error = SlashCommand::from_form(body.as_bytes()).expect_err(name);
            assert_eq!(error.to_string(), expected, "{name}");
        }
        assert_eq!(
            interaction_form(b"token=x")
                .expect_err("no payload")
                .to_string(),
            "interaction payload: payload is missing"
        );
        assert!(event_body(b"[]").is_err());
    }

    #[test]
    fn other_interactions_events_and_envelope_types_are_not_ours() {
        let shortcut = json!({ "type": "shortcut", "team": { "id": "T1" }, "user": { "id": "U1" },
            "api_app_id": "A1", "callback_id": "c", "trigger_id": "t", "action_ts": "1.2" });
        let Ok(Frame::Envelope(shortcut)) = frame(&envelope("interactive", shortcut)) else {
            panic!("an envelope");
        };
        assert_eq!(shortcut.body, Ok(EnvelopeBody::Inputs(Vec::new())));
        let Ok(Frame::Envelope(future)) =
            frame(r#"{"type":"app_rate_limited","envelope_id":"e9"}"#)
        else {
            panic!("an envelope");
        };
        assert_eq!(
            future.body,
            Ok(EnvelopeBody::Other("app_rate_limited".into()))
        );
        let verification = br#"{"type":"url_verification","token":"t","challenge":"c-1"}"#;
        assert_eq!(
            event_body(verification),
            Ok(EventBody::UrlVerification {
                challenge: "c-1".into()
            })
        );
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Z0-9]{1,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_parser_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SlashCommand::from_form(&bytes);
            let _ = interaction_form(&bytes);
            let _ = event_body(&bytes);
            let _ = frame(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn no_parser_panics_on_frames_with_slack_field_names(
            kind in prop::sample::select(vec!["hello", "disconnect", "slash_commands", "interactive", "events_api", "x"]),
            fields in proptest::collection::btree_map(
                prop::sample::select(vec!["envelope_id", "payload", "retry_attempt", "retry_reason", "reason",
                    "channel_id", "user_id", "trigger_id", "text", "type", "user", "actions", "event", "item"]),
                prop_oneof![
                    Just(Value::Null),
                    any::<bool>().prop_map(Value::from),
                    any::<i64>().prop_map(Value::from),
                    ".{0,20}".prop_map(Value::from),
                    proptest::collection::vec(".{0,8}".prop_map(Value::from), 0..3).prop_map(Value::from),
                ],
                0..8,
            ),
        ) {
            let mut object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            object.insert("type".into(), Value::from(kind));
            let text = Value::Object(object.clone()).to_string();
            let _ = frame(&text);
            let payload = Value::Object(object).to_string();
            let _ = frame(&format!(r#"{{"type":"{kind}","envelope_id":"e1","payload":{payload}}}"#));
            let _ = event_body(payload.as_bytes());
        }

        #[test]
        fn the_command_text_arrives_exactly_as_typed(text in any::<String>(), channel in id(), user in id()) {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("channel_id", channel.as_str()), ("user_id", user.as_str()),
                    ("trigger_id", "t.1"), ("command", "/rollback"), ("text", text.as_str())])
                .finish();
            let parsed = SlashCommand::from_form(body.as_bytes()).expect("a valid form");
            prop_assert_eq!(&parsed.text, &text);
            prop_assert_eq!(&parsed.channel, &channel);
            let mut payload = command_payload(&text);
            payload["channel_id"] = Value::from(channel.clone());
            payload["user_id"] = Value::from(user.clone());
            let Ok(Frame::Envelope(envelope)) = frame(&envelope("slash_commands", payload)) else {
                panic!("an envelope");
            };
            let Ok(EnvelopeBody::Command(command)) = envelope.body else {
                panic!("a command");
            };
            prop_assert_eq!(command.text, text);
            prop_assert_eq!(command.user, user);
        }

        #[test]
        fn ids_outside_letters_and_digits_never_get_through(
            bad in "[A-Z0-9]{0,4}[^A-Za-z0-9][A-Z0-9]{0,4}",
            field in prop::sample::select(vec!["channel_id", "user_id"]),
        ) {
            let mut pairs = vec![("channel_id", "C1".to_owned()), ("user_id", "U1".to_owned()), ("trigger_id", "t".to_owned())];
            for pair in &mut pairs {
                if pair.0 == field {
                    pair.1 = bad.clone();
                }
            }
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            prop_assert!(SlashCommand::from_form(body.as_bytes()).is_err());
            let mut payload = click_payload("U0BOB00001", "approve:rb-1");
            if field == "user_id" {
                payload["user"]["id"] = Value::from(bad.clone());
            } else {
                payload["channel"]["id"] = Value::from(bad.clone());
            }
            let Ok(Frame::Envelope(envelope)) = frame(&envelope("interactive", payload)) else {
                panic!("an envelope");
            };
            prop_assert!(envelope.body.is_err(), "{:?}", envelope.body);
        }
    }
}
