//! The one place text becomes Discord message content: every text rollbot sends to Discord
//! (status messages, thread replies, ephemeral answers) is rendered by [`render`] or
//! [`render_message`].
//!
//! Discord gives meaning to ASCII punctuation almost everywhere: `**bold**`, `*italic*`,
//! `__underline__`, `~~strike~~`, `||spoiler||`, `` `code` `` and ```` ``` ```` blocks, `#`
//! headings and `-#` subtext, `-`/`*`/`+`/`1.` lists and `>`/`>>>` quotes at the start of a
//! line, `[masked](links)`, `<@user>`, `<@&role>`, `<#channel>`, `<t:…>` timestamps,
//! `<:emoji:id>`, and `@everyone`/`@here` broadcasts. Its parser drops a backslash before any
//! character that is not a letter, a digit or whitespace and shows the character as it is. So
//! words (plain spans, bold spans, ids that are not ids) are escaped with no exceptions,
//! whoever wrote them: a backslash before *every* ASCII punctuation character, which costs
//! nothing where the character meant nothing and leaves no sequence Discord could read as
//! markup. A line starting with `#`, `-`, `>` or `1.` stays literal because its first
//! punctuation is escaped wherever it stands. A URL someone typed is escaped like everything
//! else, so it is shown but not linked (and not previewed): only a [`Span::Link`], which only
//! rollbot makes, becomes a link, written `<https://…>` so that it ends where it should and
//! Discord shows no embed for it.
//!
//! Mentions are guarded twice. The adapter sends `allowed_mentions` naming exactly the users
//! [`mentioned_users`] returns and nothing to parse, so even a mention that slipped into the
//! content could notify nobody else. And the content itself holds none: `<@`, `<#` and `<t:` of
//! words are broken up by the backslashes, and an `@` followed by `everyone` or `here` (any
//! case) gets a zero-width space after it (as discord.py's `escape_mentions` and discord.js's
//! `cleanContent` do), so the raw content does not contain `@everyone` even for a reader that
//! ignores backslashes. A [`Span::Mention`] becomes `<@id>` only when its id is a Discord
//! snowflake, and those spans only come from rollbot's code.
//!
//! Code spans use one backtick. Discord's inline code has no escapes (a backslash inside shows
//! as a backslash), so a backtick inside could only be fenced with longer runs of backticks
//! whose rules at the edges are fiddly; instead a backtick in code is shown as `ˋ` (U+02CB,
//! which looks alike) and a line break as a space. Nothing else in code is changed, apart from
//! the zero-width space after an `@` before `everyone`/`here`.
//!
//! Discord takes at most [`MAX_CONTENT_CHARS`] characters (Unicode code points) of content.
//! [`render_message`] cuts a longer message at a line break where it can, else between two
//! characters, and never inside an escape, a mention, a link, or a bold or code span (a span
//! the cut falls in is closed first), and ends it with `…`.

use crate::chat::text::is_plain_url;
use crate::chat::{Block, Message, Span, Text};

/// Discord's limit on a message's content, in characters (Unicode code points: Discord's API
/// counts `len()` of a Python string).
pub const MAX_CONTENT_CHARS: usize = 2000;

/// Discord's limit on `allowed_mentions.users`.
pub const MAX_ALLOWED_USERS: usize = 100;

/// Invisible; keeps `@` and `everyone` apart.
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// What a backtick in a code span is shown as.
const CODE_BACKTICK: &str = "\u{02CB}";

const BOLD: &str = "**";
const CODE: &str = "`";
const SUBTEXT: &str = "-# ";

/// Discord's escaping of words: a backslash before every ASCII punctuation character, a
/// zero-width space after an `@` that would otherwise start `@everyone` or `@here`, everything
/// else (line breaks included) as it is.
pub fn escape(words: &str) -> String {
    let mut pieces = Pieces::default();
    pieces.words(words, true);
    pieces.concat()
}

/// `text` as Discord content. Never cut: see [`render_message`] for content that must fit.
pub fn render(text: &Text) -> String {
    let mut pieces = Pieces::default();
    pieces.text(text);
    pieces.concat()
}

/// `text` as Discord content of at most [`MAX_CONTENT_CHARS`] characters, cut between whole
/// pieces (never inside an escape or a mention) like [`render_message`].
pub fn render_fitted(text: &Text) -> String {
    let mut pieces = Pieces::default();
    pieces.text(text);
    pieces.fit(MAX_CONTENT_CHARS)
}

/// A message's blocks as Discord content, at most [`MAX_CONTENT_CHARS`] characters: a header
/// as a bold line, text as it renders, fields as `**Label:** value` lines, context as a `-# `
/// subtext line, one line break between blocks. Buttons are not text: the adapter sends them as
/// components. A message of nothing but buttons is empty content.
pub fn render_message(message: &Message) -> String {
    message_pieces(message).fit(MAX_CONTENT_CHARS)
}

/// The users `message`'s mentions name, first mention first, each once, at most
/// [`MAX_ALLOWED_USERS`]: the message's `allowed_mentions.users`.
pub fn mentioned_users(message: &Message) -> Vec<u64> {
    let mut users = Vec::new();
    for block in &message.blocks {
        match block {
            Block::Text { text } | Block::Context { text } => add_mentions(text, &mut users),
            Block::Fields { fields } => {
                for (_, value) in fields {
                    add_mentions(value, &mut users);
                }
            }
            Block::Header { .. } | Block::Actions { .. } => {}
        }
    }
    users.truncate(MAX_ALLOWED_USERS);
    users
}

/// The users `text`'s mentions name, first mention first, each once, at most
/// [`MAX_ALLOWED_USERS`].
pub fn mentioned_users_in(text: &Text) -> Vec<u64> {
    let mut users = Vec::new();
    add_mentions(text, &mut users);
    users.truncate(MAX_ALLOWED_USERS);
    users
}

fn add_mentions(text: &Text, users: &mut Vec<u64>) {
    for span in text.spans() {
        if let Span::Mention(id) = span {
            if let Some(user) = snowflake(id) {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
        }
    }
}

/// A Discord snowflake as Discord writes one: 1 to 20 ASCII digits, no leading zero, not zero,
/// within `u64`.
pub fn snowflake(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || id.starts_with('0') {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Whether the words right after an `@` need a zero-width space between: they start
/// `everyone` or `here` (any case), or with a zero-width space (so that the one rollbot adds
/// can always be told from one that was typed).
fn needs_break_after_at(rest: &str) -> bool {
    let starts_with = |word: &str| {
        rest.get(..word.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(word))
    };
    rest.starts_with(ZERO_WIDTH_SPACE) || starts_with("everyone") || starts_with("here")
}

/// A URL that names a broadcast (`…/@here`) is shown as words, so no reader of the raw
/// content finds one in a link.
fn names_broadcast(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.contains("@everyone") || lower.contains("@here")
}

/// A span of rendered content, as [`Pieces::fit`] cuts it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Indivisible: a character or escape sequence of words, a mention, a link.
    Atom(String),
    /// A line break outside any bold or code span: where a cut is best made.
    LineBreak,
    /// Starts a bold or code span, which the matching `Close` ends.
    Open(&'static str),
    Close(&'static str),
}

impl Piece {
    fn as_str(&self) -> &str {
        match self {
            Piece::Atom(atom) => atom,
            Piece::LineBreak => "\n",
            Piece::Open(delimiter) | Piece::Close(delimiter) => delimiter,
        }
    }

    fn chars(&self) -> usize {
        self.as_str().chars().count()
    }
}

/// Content as [`Piece`]s.
#[derive(Debug, Default)]
struct Pieces(Vec<Piece>);

impl Pieces {
    fn atom(&mut self, atom: impl Into<String>) {
        self.0.push(Piece::Atom(atom.into()));
    }

    fn extend(&mut self, other: Pieces) {
        self.0.extend(other.0);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn concat(&self) -> String {
        self.0.iter().map(Piece::as_str).collect()
    }

    /// Escaped words. A line break in them is a place to cut unless they are inside a span.
    fn words(&mut self, words: &str, line_breaks_cut: bool) {
        for (at, c) in words.char_indices() {
            if c == '\n' && line_breaks_cut {
                self.0.push(Piece::LineBreak);
            } else if c.is_ascii_punctuation() {
                let mut escaped = String::with_capacity(5);
                escaped.push('\\');
                escaped.push(c);
                if c == '@' && needs_break_after_at(&words[at + 1..]) {
                    escaped.push(ZERO_WIDTH_SPACE);
                }
                self.atom(escaped);
            } else {
                self.atom(c);
            }
        }
    }

    fn bold(&mut self, words: &str) {
        self.0.push(Piece::Open(BOLD));
        self.words(words, false);
        self.0.push(Piece::Close(BOLD));
    }

    fn code(&mut self, words: &str) {
        self.0.push(Piece::Open(CODE));
        for (at, c) in words.char_indices() {
            match c {
                '`' => self.atom(CODE_BACKTICK),
                '\n' | '\r' => self.atom(' '),
                '@' if needs_break_after_at(&words[at + 1..]) => {
                    self.atom(format!("@{ZERO_WIDTH_SPACE}"));
                }
                c => self.atom(c),
            }
        }
        self.0.push(Piece::Close(CODE));
    }

    fn text(&mut self, text: &Text) {
        for span in &spans_to_write(text) {
            match span {
                Span::Plain(words) => self.words(words, true),
                Span::Bold(words) => self.bold(words),
                Span::Code(words) => self.code(words),
                Span::Mention(id) => match snowflake(id) {
                    Some(user) => self.atom(format!("<@{user}>")),
                    None => self.words(&format!("@{id}"), true),
                },
                Span::Channel(id) => match snowflake(id) {
                    Some(channel) => self.atom(format!("<#{channel}>")),
                    None => self.words(&format!("#{id}"), true),
                },
                Span::Link(url) if is_plain_url(url) && !names_broadcast(url) => {
                    self.atom(format!("<{url}>"));
                }
                Span::Link(url) => self.words(url, true),
            }
        }
    }

    /// The content, cut to at most `limit` characters (see [`render_message`]).
    fn fit(&self, limit: usize) -> String {
        let total: usize = self.0.iter().map(Piece::chars).sum();
        if total <= limit {
            return self.concat();
        }
        // Room for the "\n…" or "…" that says something was cut.
        let budget = limit.saturating_sub(2);
        let mut out = String::new();
        let mut used = 0;
        // The delimiter of the span being written, and where it started in `out`.
        let mut open: Option<(&str, usize)> = None;
        // The last line break outside spans: its offset in `out` and the characters before it.
        let mut last_break: Option<(usize, usize)> = None;
        for piece in &self.0 {
            let closing = open.map_or(0, |(delimiter, _)| delimiter.chars().count());
            let needed = match piece {
                // A span opens only if it can be closed.
                Piece::Open(delimiter) => 2 * delimiter.chars().count(),
                // Its room was kept when it opened.
                Piece::Close(_) => 0,
                Piece::Atom(_) | Piece::LineBreak => piece.chars() + closing,
            };
            if used + needed > budget {
                break;
            }
            match piece {
                Piece::Open(delimiter) => open = Some((delimiter, out.len())),
                Piece::Close(_) => open = None,
                Piece::LineBreak => last_break = Some((out.len(), used)),
                Piece::Atom(_) => {}
            }
            out.push_str(piece.as_str());
            used += piece.chars();
        }
        if let Some((delimiter, at)) = open {
            if out.len() == at + delimiter.len() {
                // Nothing was written inside: no empty span.
                out.truncate(at);
            } else {
                out.push_str(delimiter);
            }
        }
        match last_break {
            // A whole line is lost rather than half of one, unless that loses most of the room.
            Some((at, before)) if before >= budget / 2 => {
                out.truncate(at);
                out.push_str("\n…");
            }
            _ => out.push('…'),
        }
        out
    }
}

/// `text`'s spans as they are written: empty words (and empty links, which show nothing) left out, and neighbouring bold (or code)
/// spans joined into one, because Discord reads `**a****b**` and `` `a``b` `` as other markup.
fn spans_to_write(text: &Text) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for span in text.spans() {
        match (out.last_mut(), span) {
            (_, Span::Plain(words) | Span::Bold(words) | Span::Code(words) | Span::Link(words))
                if words.is_empty() => {}
            (Some(Span::Bold(last)), Span::Bold(words))
            | (Some(Span::Code(last)), Span::Code(words)) => last.push_str(words),
            (_, span) => out.push(span.clone()),
        }
    }
    out
}

fn message_pieces(message: &Message) -> Pieces {
    let mut pieces = Pieces::default();
    for block in &message.blocks {
        let mut block_pieces = Pieces::default();
        match block {
            Block::Header { text } if text.is_empty() => {}
            Block::Header { text } => block_pieces.bold(text),
            Block::Text { text } => block_pieces.text(text),
            Block::Fields { fields } => {
                for (index, (label, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        block_pieces.0.push(Piece::LineBreak);
                    }
                    block_pieces.bold(&format!("{label}:"));
                    block_pieces.atom(' ');
                    block_pieces.text(value);
                }
            }
            Block::Context { text } => {
                let mut words = Pieces::default();
                words.text(text);
                if !words.is_empty() {
                    block_pieces.atom(SUBTEXT);
                    block_pieces.extend(words);
                }
            }
            Block::Actions { .. } => {}
        }
        if block_pieces.is_empty() {
            continue;
        }
        if !pieces.is_empty() {
            pieces.0.push(Piece::LineBreak);
        }
        pieces.extend(block_pieces);
    }
    pieces
}

#[cfg(test)]
mod tests;
