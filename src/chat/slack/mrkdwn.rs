//! The one place text becomes Slack mrkdwn: every text rollbot sends to Slack (block text,
//! a message's `text` fallback, ephemeral replies, the slash command's acknowledgement) is
//! rendered by [`render`].
//!
//! Slack reads `&`, `<` and `>` as control characters: `<@U…>` mentions, `<!channel>`,
//! `<!here>`, `<!subteam^S…>` broadcast, `<#C…>` links a channel, `<https://…|text>` is a link.
//! So words are escaped (`&amp;`, `&lt;`, `&gt;`, Slack's documented escaping) with no
//! exceptions, whoever wrote them; a control sequence is only ever written for a
//! [`Span::Mention`] or [`Span::Channel`] whose id is a Slack id, and those spans only come from
//! rollbot's code. An id that is not one is shown as words.

use crate::chat::text::is_plain_url;
use crate::chat::{Span, Text};

/// Slack's escaping of words: `&`, `<`, `>` as entities, everything else as it is.
pub fn escape(words: &str) -> String {
    let mut out = String::with_capacity(words.len());
    for c in words.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A Slack id (`U…`, `W…`, `C…`): ASCII letters and digits, as `inbound` accepts them.
fn is_slack_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `text` as mrkdwn.
pub fn render(text: &Text) -> String {
    let mut out = String::new();
    for span in text.spans() {
        match span {
            Span::Plain(words) => out.push_str(&escape(words)),
            Span::Bold(words) => {
                out.push('*');
                out.push_str(&escape(words));
                out.push('*');
            }
            Span::Code(words) => {
                out.push('`');
                out.push_str(&escape(words));
                out.push('`');
            }
            Span::Mention(id) if is_slack_id(id) => {
                out.push_str("<@");
                out.push_str(id);
                out.push('>');
            }
            Span::Mention(id) => {
                out.push('@');
                out.push_str(&escape(id));
            }
            Span::Channel(id) if is_slack_id(id) => {
                out.push_str("<#");
                out.push_str(id);
                out.push('>');
            }
            Span::Channel(id) => {
                out.push('#');
                out.push_str(&escape(id));
            }
            Span::Link(url) if is_plain_url(url) => {
                out.push('<');
                out.push_str(url);
                out.push('>');
            }
            Span::Link(url) => out.push_str(&escape(url)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every `<` in `rendered` that starts a Slack control sequence, as the sequence (up to its
    /// `>`, or the end).
    fn control_sequences(rendered: &str) -> Vec<String> {
        rendered
            .match_indices('<')
            .map(|(at, _)| {
                let rest = &rendered[at..];
                rest[..rest.find('>').map_or(rest.len(), |end| end + 1)].to_owned()
            })
            .collect()
    }

    #[test]
    fn words_are_escaped_and_only_typed_mentions_are_mentions() {
        let cases: Vec<(Text, &str)> = vec![
            (
                Text::new().mention("U123").plain(" asked: a < b & c > d"),
                "<@U123> asked: a &lt; b &amp; c &gt; d",
            ),
            (
                Text::from("<@U123> <!channel> <!here> <!subteam^S1> <#C1> <https://evil|click> <mailto:a@b>"),
                "&lt;@U123&gt; &lt;!channel&gt; &lt;!here&gt; &lt;!subteam^S1&gt; &lt;#C1&gt; &lt;https://evil|click&gt; &lt;mailto:a@b&gt;",
            ),
            (
                Text::new().bold("<!channel>").plain(" ").code("<@U1>"),
                "*&lt;!channel&gt;* `&lt;@U1&gt;`",
            ),
            (
                Text::new()
                    .mention("U1> <!channel")
                    .plain(" ")
                    .channel("C1|x> <!here")
                    .plain(" ")
                    .channel("C0RELEASES"),
                "@U1&gt; &lt;!channel #C1|x&gt; &lt;!here <#C0RELEASES>",
            ),
            (Text::from("&amp; already"), "&amp;amp; already"),
            (
                Text::from("Discussion: ")
                    .link("https://github.com/acme/app/discussions/7")
                    .plain(" ")
                    .link("https://x|<!channel>")
                    .plain(" ")
                    .link("javascript:alert(1)"),
                "Discussion: <https://github.com/acme/app/discussions/7> https://x|&lt;!channel&gt; javascript:alert(1)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(render(&text), expected, "{text:?}");
        }
    }

    fn any_span() -> impl Strategy<Value = Span> {
        prop_oneof![
            any::<String>().prop_map(Span::Plain),
            any::<String>().prop_map(Span::Bold),
            any::<String>().prop_map(Span::Code),
            any::<String>().prop_map(Span::Mention),
            any::<String>().prop_map(Span::Channel),
            any::<String>().prop_map(Span::Link),
            "https?://[<>@!#&|^a-zA-Z0-9:/ .]{0,24}".prop_map(Span::Link),
            "[<>@!#&|^a-zA-Z0-9:/ ]{0,24}".prop_map(Span::Plain),
            "[<>@!#&|^a-zA-Z0-9:/ ]{0,24}".prop_map(Span::Mention),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the spans hold, the only control sequences in the output are a mention or a
        /// channel link of a valid id, one per such span.
        #[test]
        fn only_mention_and_channel_spans_make_control_sequences(
            spans in proptest::collection::vec(any_span(), 0..8)
        ) {
            let text = spans.iter().cloned().fold(Text::new(), Text::push);
            let rendered = render(&text);
            let expected: Vec<String> = text
                .spans()
                .iter()
                .filter_map(|span| match span {
                    Span::Mention(id) if is_slack_id(id) => Some(format!("<@{id}>")),
                    Span::Channel(id) if is_slack_id(id) => Some(format!("<#{id}>")),
                    Span::Link(url) if is_plain_url(url) => Some(format!("<{url}>")),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(control_sequences(&rendered), expected, "{}", rendered);
        }

        #[test]
        fn escaped_words_hold_no_control_character(words in any::<String>()) {
            let escaped = escape(&words);
            prop_assert!(!escaped.contains('<') && !escaped.contains('>'), "{}", escaped);
            prop_assert_eq!(
                escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"),
                words
            );
        }
    }
}
