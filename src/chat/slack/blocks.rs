//! The platform-neutral [`Message`] as Slack Block Kit JSON, within Block Kit's limits
//! (header 150 characters, section text 3000, 10 fields per section, field text 2000). Every
//! mrkdwn text comes from [`mrkdwn::render`] and is `verbatim` (Slack otherwise turns bare
//! `@here`, `@channel`, `#channel` names and URLs typed by people into broadcasts and links);
//! headers and button labels are `plain_text`, which Slack does not parse for mentions or links.

use serde_json::{json, Value};

use super::mrkdwn;
use crate::chat::{Block, ButtonStyle, Message, Text};

/// `text` (rendered mrkdwn) cut to `max` characters with an ellipsis. The cut never splits an
/// entity (`&lt;`) or a mention (`<@U1>`): an unfinished one at the end goes too.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    for (open, close) in [('<', '>'), ('&', ';')] {
        if let Some(start) = cut.rfind(open) {
            if !cut[start..].contains(close) {
                cut.truncate(start);
            }
        }
    }
    cut.push('…');
    cut
}

/// The blocks of a message.
pub fn blocks(message: &Message) -> Vec<Value> {
    let mut out = Vec::new();
    for block in &message.blocks {
        match block {
            Block::Header { text } => out.push(json!({
                "type": "header",
                "text": { "type": "plain_text", "text": truncate(text, 150), "emoji": true }
            })),
            Block::Text { text } => out.push(json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": truncate(&mrkdwn::render(text), 3000), "verbatim": true }
            })),
            Block::Fields { fields } => {
                for chunk in fields.chunks(10) {
                    let fields: Vec<Value> = chunk
                        .iter()
                        .map(|(label, value)| {
                            json!({
                                "type": "mrkdwn",
                                "verbatim": true,
                                "text": truncate(&mrkdwn::render(&Text::new().bold(label).plain("\n").append(value.clone())), 2000)
                            })
                        })
                        .collect();
                    out.push(json!({ "type": "section", "fields": fields }));
                }
            }
            Block::Context { text } => out.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": truncate(&mrkdwn::render(text), 3000), "verbatim": true }]
            })),
            Block::Actions { buttons } => {
                let elements: Vec<Value> = buttons
                    .iter()
                    .map(|button| {
                        json!({
                            "type": "button",
                            "text": { "type": "plain_text", "text": button.label },
                            "action_id": button.action,
                            "value": button.action,
                            "style": match button.style {
                                ButtonStyle::Primary => "primary",
                                ButtonStyle::Danger => "danger",
                            }
                        })
                    })
                    .collect();
                out.push(json!({ "type": "actions", "elements": elements }));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_to_block_kit_limits() {
        let message = Message {
            fallback: Text::new(),
            blocks: vec![
                Block::Header {
                    text: "h".repeat(200),
                },
                Block::Fields {
                    fields: (0..12)
                        .map(|i| (format!("f{i}"), Text::from("v")))
                        .collect(),
                },
            ],
        };
        let rendered = blocks(&message);
        assert_eq!(
            rendered[0]["text"]["text"]
                .as_str()
                .map(|t| t.chars().count()),
            Some(150)
        );
        assert_eq!(rendered.len(), 3, "12 fields become two sections");
    }

    #[test]
    fn a_cut_never_splits_an_entity_or_a_mention() {
        let cases = [
            ("abc&lt;def", 6, "abc…"),
            ("ab&lt;cd", 7, "ab&lt;…"),
            ("a <@U1ALICE> b", 8, "a …"),
            ("a <@U1> bcdef", 9, "a <@U1> …"),
            ("short", 5, "short"),
        ];
        for (text, max, expected) in cases {
            assert_eq!(truncate(text, max), expected, "{text} {max}");
        }
    }
}
