//! The platform-neutral [`Message`] as Slack Block Kit JSON, within Block Kit's limits
//! (header 150 characters, section text 3000, 10 fields per section, field text 2000).

use serde_json::{json, Value};

use crate::chat::{Block, ButtonStyle, Message};

/// Slack's `&`, `<`, `>` escaping, keeping our `<@U123>` mentions as mentions.
pub fn mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let (before, from) = rest.split_at(start);
        out.push_str(&escape(before));
        match from.find('>') {
            Some(end)
                if from[2..end]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    && end > 2 =>
            {
                out.push_str(&from[..=end]);
                rest = &from[end + 1..];
            }
            _ => {
                out.push_str(&escape(&from[..2]));
                rest = &from[2..];
            }
        }
    }
    out.push_str(&escape(rest));
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
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
                "text": { "type": "mrkdwn", "text": truncate(&mrkdwn(text), 3000) }
            })),
            Block::Fields { fields } => {
                for chunk in fields.chunks(10) {
                    let fields: Vec<Value> = chunk
                        .iter()
                        .map(|(label, value)| {
                            json!({
                                "type": "mrkdwn",
                                "text": truncate(&format!("*{}*\n{}", mrkdwn(label), mrkdwn(value)), 2000)
                            })
                        })
                        .collect();
                    out.push(json!({ "type": "section", "fields": fields }));
                }
            }
            Block::Context { text } => out.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": truncate(&mrkdwn(text), 3000) }]
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
    fn mrkdwn_escapes_everything_but_mentions() {
        assert_eq!(
            mrkdwn("<@U123> asked: a < b & c > d"),
            "<@U123> asked: a &lt; b &amp; c &gt; d"
        );
        assert_eq!(
            mrkdwn("<@bad id> <!channel>"),
            "&lt;@bad id&gt; &lt;!channel&gt;"
        );
        assert_eq!(mrkdwn("<@"), "&lt;@");
    }

    #[test]
    fn long_texts_are_cut_to_block_kit_limits() {
        let message = Message {
            fallback: String::new(),
            blocks: vec![
                Block::Header {
                    text: "h".repeat(200),
                },
                Block::Fields {
                    fields: (0..12).map(|i| (format!("f{i}"), "v".into())).collect(),
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
}
