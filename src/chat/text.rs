//! Text as rollbot writes it to chat: a list of typed spans. Words are [`Span::Plain`] and are
//! shown exactly as written, whoever wrote them; emphasis, code, mentions and channel links are
//! spans of their own that only rollbot's code (or the operator's template, see
//! `chat::summary`) creates. A platform renders each span its own way and escapes plain text
//! with no exceptions, so nothing a person types (a reason, an image name, an error quoting
//! them) can become a mention, a broadcast, a link or formatting.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One piece of [`Text`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    /// Shown as written: never markup, a mention, a link or a broadcast.
    Plain(String),
    /// rollbot's emphasis; the words inside are shown as written.
    Bold(String),
    /// rollbot's code formatting (image names, digests, commands); shown as written.
    Code(String),
    /// A person, by the platform's user id: the one way a message notifies someone. Only
    /// rollbot puts these in (the requester, approvers); a platform renders an id it does not
    /// accept as plain text.
    Mention(String),
    /// A channel, by the platform's channel id (from rollbot's config).
    Channel(String),
    /// A link rollbot itself made (a GitHub Discussion's URL). A platform shows a URL that is
    /// not a plain `http(s)://` address as words.
    Link(String),
}

/// A URL a platform may show as a link: `http://` or `https://`, and nothing that could end
/// or extend a link's markup (whitespace, `<`, `>`, `|`, quotes, control characters).
pub fn is_plain_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && !url.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|' | '"' | '\'')
        })
}

/// Text made of [`Span`]s. Built with the chainable methods; a plain `&str` or `String` converts
/// into text of one plain span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(Vec<Span>);

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// Words shown as written (joined to the plain span before, if any).
    pub fn plain(mut self, words: impl AsRef<str>) -> Text {
        let words = words.as_ref();
        if words.is_empty() {
            return self;
        }
        match self.0.last_mut() {
            Some(Span::Plain(last)) => last.push_str(words),
            _ => self.0.push(Span::Plain(words.to_owned())),
        }
        self
    }

    pub fn bold(self, words: impl Into<String>) -> Text {
        self.push(Span::Bold(words.into()))
    }

    pub fn code(self, words: impl Into<String>) -> Text {
        self.push(Span::Code(words.into()))
    }

    pub fn mention(self, user_id: impl Into<String>) -> Text {
        self.push(Span::Mention(user_id.into()))
    }

    pub fn channel(self, channel_id: impl Into<String>) -> Text {
        self.push(Span::Channel(channel_id.into()))
    }

    pub fn link(self, url: impl Into<String>) -> Text {
        self.push(Span::Link(url.into()))
    }

    /// Appends one span (a plain one joins the plain span before it).
    pub fn push(mut self, span: Span) -> Text {
        match span {
            Span::Plain(words) => self.plain(words),
            other => {
                self.0.push(other);
                self
            }
        }
    }

    /// Appends all of `other`.
    pub fn append(self, other: Text) -> Text {
        other.0.into_iter().fold(self, Text::push)
    }

    /// `parts` with `separator` (plain) between them.
    pub fn join(parts: impl IntoIterator<Item = Text>, separator: &str) -> Text {
        let mut out = Text::new();
        for (index, part) in parts.into_iter().enumerate() {
            if index > 0 {
                out = out.plain(separator);
            }
            out = out.append(part);
        }
        out
    }

    pub fn spans(&self) -> &[Span] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The canonical form snapshots compare: `*bold*`, `` `code` ``, `<@user>`, `<#channel>`, plain
/// words as they are. Not a format any platform is sent: a plain `<@U1>` typed by someone looks
/// the same here as a mention, and is escaped by every renderer.
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for span in &self.0 {
            match span {
                Span::Plain(words) => f.write_str(words)?,
                Span::Bold(words) => write!(f, "*{words}*")?,
                Span::Code(words) => write!(f, "`{words}`")?,
                Span::Mention(id) => write!(f, "<@{id}>")?,
                Span::Channel(id) => write!(f, "<#{id}>")?,
                Span::Link(url) => f.write_str(url)?,
            }
        }
        Ok(())
    }
}

impl From<&str> for Text {
    fn from(words: &str) -> Text {
        Text::new().plain(words)
    }
}

impl From<String> for Text {
    fn from(words: String) -> Text {
        Text::new().plain(words)
    }
}

impl From<&String> for Text {
    fn from(words: &String) -> Text {
        Text::new().plain(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_join_and_typed_spans_stay_apart() {
        let text = Text::new()
            .mention("U1")
            .plain(": <@U2> ")
            .plain("said ")
            .code("x")
            .append(Text::from("!"))
            .plain("");
        assert_eq!(
            text.spans(),
            [
                Span::Mention("U1".into()),
                Span::Plain(": <@U2> said ".into()),
                Span::Code("x".into()),
                Span::Plain("!".into()),
            ]
        );
        assert_eq!(text.to_string(), "<@U1>: <@U2> said `x`!");
    }

    #[test]
    fn joined_text_has_plain_separators() {
        let joined = Text::join(
            [
                Text::new().plain("approved by ").mention("U1"),
                Text::new().plain("rejected by ").mention("U2"),
            ],
            ", ",
        );
        assert_eq!(joined.to_string(), "approved by <@U1>, rejected by <@U2>");
        assert_eq!(Text::join([], ", "), Text::new());
    }

    #[test]
    fn text_serialises_as_its_spans() {
        let text = Text::new().mention("U1").plain(" hi ").bold("now");
        let json = serde_json::to_value(&text).expect("json");
        assert_eq!(
            json,
            serde_json::json!([{ "mention": "U1" }, { "plain": " hi " }, { "bold": "now" }])
        );
        let back: Text = serde_json::from_value(json).expect("back");
        assert_eq!(back, text);
    }
}
