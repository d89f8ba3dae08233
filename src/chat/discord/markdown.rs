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

/// `text`'s spans as they are written: empty words left out, and neighbouring bold (or code)
/// spans joined into one, because Discord reads `**a****b**` and `` `a``b` `` as other markup.
fn spans_to_write(text: &Text) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for span in text.spans() {
        match (out.last_mut(), span) {
            (_, Span::Plain(words) | Span::Bold(words) | Span::Code(words)) if words.is_empty() => {
            }
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
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chat::{Button, ButtonStyle};

    /// What rendered content holds, read by the rules rollbot writes by: the test's view of
    /// how Discord will read it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Token {
        /// A character shown as it is (escaped or not).
        Char(char),
        LineBreak,
        Bold,
        Code(String),
        Mention(u64),
        Channel(u64),
        Link(String),
        Subtext,
    }

    /// `content` as [`Token`]s, or what in it is not something rollbot writes: punctuation that
    /// is not escaped, a backslash escaping nothing, an unclosed span, a broken mention, an
    /// `@everyone` or `@here` together.
    fn read(content: &str) -> Result<Vec<Token>, String> {
        let chars: Vec<char> = content.chars().collect();
        let rest = |at: usize| chars[at..].iter().collect::<String>();
        let mut tokens = Vec::new();
        let mut bold = false;
        let mut line_start = true;
        let mut at = 0;
        while at < chars.len() {
            if line_start && rest(at).starts_with(SUBTEXT) {
                tokens.push(Token::Subtext);
                at += SUBTEXT.len();
                line_start = false;
                continue;
            }
            line_start = false;
            match chars[at] {
                '\\' => {
                    let Some(&escaped) = chars.get(at + 1) else {
                        return Err(format!("a backslash at the end of {content:?}"));
                    };
                    if !escaped.is_ascii_punctuation() {
                        return Err(format!("a backslash before {escaped:?} in {content:?}"));
                    }
                    tokens.push(Token::Char(escaped));
                    at += 2;
                    if escaped == '@' {
                        if chars.get(at) == Some(&ZERO_WIDTH_SPACE) {
                            at += 1;
                        } else if needs_break_after_at(&rest(at)) {
                            return Err(format!("a broadcast in {content:?}"));
                        }
                    }
                }
                '*' if chars.get(at + 1) == Some(&'*') => {
                    // Discord ends bold at the first `**` not followed by another `*`, and
                    // reads `****` as neither an end nor a start.
                    if chars.get(at + 2) == Some(&'*') {
                        return Err(format!("a run of * in {content:?}"));
                    }
                    if !bold && chars.get(at + 2).is_none() {
                        return Err(format!("bold opened at the end of {content:?}"));
                    }
                    bold = !bold;
                    tokens.push(Token::Bold);
                    at += 2;
                }
                '`' => {
                    let Some(length) = chars[at + 1..].iter().position(|&c| c == '`') else {
                        return Err(format!("an unclosed code span in {content:?}"));
                    };
                    let code: String = chars[at + 1..at + 1 + length].iter().collect();
                    if code.is_empty() || code.contains('\n') {
                        return Err(format!("code span {code:?} in {content:?}"));
                    }
                    let lower = code.to_lowercase();
                    if lower.contains("@everyone") || lower.contains("@here") {
                        return Err(format!("a broadcast in code in {content:?}"));
                    }
                    tokens.push(Token::Code(code));
                    at += length + 2;
                    // `` `a``b` `` is one span of `a``b` to Discord.
                    if chars.get(at) == Some(&'`') {
                        return Err(format!("code spans back to back in {content:?}"));
                    }
                }
                '<' => {
                    let Some(length) = chars[at + 1..].iter().position(|&c| c == '>') else {
                        return Err(format!("an unclosed < in {content:?}"));
                    };
                    let inner: String = chars[at + 1..at + 1 + length].iter().collect();
                    let token = if let Some(user) = inner.strip_prefix('@').and_then(snowflake) {
                        Token::Mention(user)
                    } else if let Some(channel) = inner.strip_prefix('#').and_then(snowflake) {
                        Token::Channel(channel)
                    } else if is_plain_url(&inner) && !names_broadcast(&inner) {
                        Token::Link(inner)
                    } else {
                        return Err(format!("<{inner}> in {content:?}"));
                    };
                    tokens.push(token);
                    at += length + 2;
                }
                '\n' => {
                    tokens.push(Token::LineBreak);
                    line_start = true;
                    at += 1;
                }
                c if c.is_ascii_punctuation() => {
                    return Err(format!("an unescaped {c:?} in {content:?}"));
                }
                c => {
                    tokens.push(Token::Char(c));
                    at += 1;
                }
            }
        }
        if bold {
            return Err(format!("an unclosed bold span in {content:?}"));
        }
        Ok(tokens)
    }

    /// The words that escaped `content` shows: the test's inverse of [`escape`].
    fn unescape(content: &str) -> Result<String, String> {
        read(content)?
            .into_iter()
            .map(|token| match token {
                Token::Char(c) => Ok(c),
                Token::LineBreak => Ok('\n'),
                other => Err(format!("{other:?} in escaped words {content:?}")),
            })
            .collect()
    }

    /// `rendered` with each escape pair (and the zero-width space after an escaped `@`)
    /// replaced by `x`: what is left is what Discord reads as markup.
    fn unescaped_view(rendered: &str) -> String {
        let mut view = String::new();
        let mut chars = rendered.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if chars.next() == Some('@') && chars.peek() == Some(&ZERO_WIDTH_SPACE) {
                    chars.next();
                }
                view.push('x');
            } else {
                view.push(c);
            }
        }
        view
    }

    const SNOWFLAKE: &str = "123456789012345678";

    #[test]
    fn words_discord_reads_as_markup_are_escaped() {
        let z = ZERO_WIDTH_SPACE;
        let cases: Vec<(&str, String)> = vec![
            ("a plain reason", "a plain reason".into()),
            ("@everyone @here", format!("\\@{z}everyone \\@{z}here")),
            ("@EveryOne @HERE!", format!("\\@{z}EveryOne \\@{z}HERE\\!")),
            ("me@example.com", "me\\@example\\.com".into()),
            (
                "<@123> <@!123> <@&456> <#789>",
                "\\<\\@123\\> \\<\\@\\!123\\> \\<\\@\\&456\\> \\<\\#789\\>".into(),
            ),
            (
                "<t:1700000000:R> <:party:123> <a:dance:456>",
                "\\<t\\:1700000000\\:R\\> \\<\\:party\\:123\\> \\<a\\:dance\\:456\\>".into(),
            ),
            (
                "**b** __u__ ~~s~~ ||x|| *i* _i_",
                "\\*\\*b\\*\\* \\_\\_u\\_\\_ \\~\\~s\\~\\~ \\|\\|x\\|\\| \\*i\\* \\_i\\_".into(),
            ),
            ("`c` ```block```", "\\`c\\` \\`\\`\\`block\\`\\`\\`".into()),
            (
                "# h1\n## h2\n-# small\n- a\n* b\n+ c\n1. d\n> q\n>>> all",
                "\\# h1\n\\#\\# h2\n\\-\\# small\n\\- a\n\\* b\n\\+ c\n1\\. d\n\\> q\n\\>\\>\\> all"
                    .into(),
            ),
            (
                "[click](https://evil.example)",
                "\\[click\\]\\(https\\:\\/\\/evil\\.example\\)".into(),
            ),
            (
                "see https://evil.example/a_b or discord.gg/x",
                "see https\\:\\/\\/evil\\.example\\/a\\_b or discord\\.gg\\/x".into(),
            ),
            ("back\\slash \\*", "back\\\\slash \\\\\\*".into()),
            (
                "@\u{200B}everyone typed with a space",
                format!("\\@{z}{z}everyone typed with a space"),
            ),
            ("ünïcödé ✓ → 🚀", "ünïcödé ✓ → 🚀".into()),
        ];
        for (words, expected) in cases {
            let escaped = escape(words);
            assert_eq!(escaped, expected, "{words:?}");
            assert_eq!(unescape(&escaped).as_deref(), Ok(words), "{words:?}");
            assert_eq!(render(&Text::from(words)), expected, "{words:?}");
        }
    }

    #[test]
    fn only_rollbots_spans_become_markup() {
        let z = ZERO_WIDTH_SPACE;
        let cases: Vec<(Text, String)> = vec![
            (
                Text::new()
                    .mention(SNOWFLAKE)
                    .plain(" asked to roll back ")
                    .code("registry.example/app:1.2")
                    .plain(". Reason: <@1> said **now**"),
                format!(
                    "<@{SNOWFLAKE}> asked to roll back `registry.example/app:1.2`\\. Reason\\: \\<\\@1\\> said \\*\\*now\\*\\*"
                ),
            ),
            (
                Text::new().bold("**x** <@1>").plain(" ").bold("*"),
                "**\\*\\*x\\*\\* \\<\\@1\\>** **\\***".into(),
            ),
            (
                Text::new().bold("a").bold("b").plain("").bold("c"),
                "**abc**".into(),
            ),
            (Text::new().code("a").code("b"), "`ab`".into()),
            (Text::new().bold("").code("").plain("x"), "x".into()),
            (
                Text::new().code("a`b``c").plain(" ").code("x\ny\\").plain(" ").code("@here"),
                format!("`aˋbˋˋc` `x y\\` `@{z}here`"),
            ),
            (
                Text::new()
                    .mention("everyone")
                    .plain(" ")
                    .mention("<@1>")
                    .plain(" ")
                    .mention("0123")
                    .plain(" ")
                    .mention("0")
                    .plain(" ")
                    .mention("18446744073709551616")
                    .plain(" ")
                    .mention("18446744073709551615")
                    .plain(" ")
                    .mention("U123"),
                format!(
                    "\\@{z}everyone \\@\\<\\@1\\> \\@0123 \\@0 \\@18446744073709551616 <@18446744073709551615> \\@U123"
                ),
            ),
            (
                Text::new()
                    .channel("987654321")
                    .plain(" ")
                    .channel("#general")
                    .plain(" ")
                    .channel("1\n# h"),
                "<#987654321> \\#\\#general \\#1\n\\# h".into(),
            ),
            (
                Text::from("Discussion: ")
                    .link("https://github.com/acme/app/discussions/7")
                    .plain("!")
                    .link("https://x/a b")
                    .plain(" ")
                    .link("javascript:alert(1)")
                    .plain(" ")
                    .link("https://x/@everyone"),
                format!(
                    "Discussion\\: <https://github.com/acme/app/discussions/7>\\!https\\:\\/\\/x\\/a b javascript\\:alert\\(1\\) https\\:\\/\\/x\\/\\@{z}everyone"
                ),
            ),
        ];
        for (text, expected) in cases {
            let rendered = render(&text);
            assert_eq!(rendered, expected, "{text:?}");
            assert!(read(&rendered).is_ok(), "{:?}", read(&rendered));
        }
    }

    fn sample_message() -> Message {
        Message {
            fallback: Text::from("Rollback rb-7"),
            blocks: vec![
                Block::Header {
                    text: "Rollback rb-7 of api: waiting for approval".into(),
                },
                Block::Text {
                    text: Text::new()
                        .mention(SNOWFLAKE)
                        .plain(" asked to roll back ")
                        .code("app:prod")
                        .plain(". Reason: # broke\n- it\n@here"),
                },
                Block::Fields {
                    fields: vec![
                        ("Target".into(), Text::new().code("sha256:abc")),
                        (
                            "Approvals".into(),
                            Text::new()
                                .plain("approved by ")
                                .mention("42")
                                .plain(", ")
                                .mention(SNOWFLAKE),
                        ),
                    ],
                },
                Block::Actions {
                    buttons: vec![Button {
                        action: "approve:rb-7".into(),
                        label: "Approve".into(),
                        style: ButtonStyle::Primary,
                    }],
                },
                Block::Text { text: Text::new() },
                Block::Header {
                    text: String::new(),
                },
                Block::Context {
                    text: Text::new()
                        .plain("A second person approves with ")
                        .code("/rollback approve rb-7")
                        .plain("."),
                },
            ],
        }
    }

    #[test]
    fn a_message_is_lines_of_blocks_without_its_buttons() {
        let z = ZERO_WIDTH_SPACE;
        let message = sample_message();
        assert_eq!(
            render_message(&message),
            format!(
                "**Rollback rb\\-7 of api\\: waiting for approval**\n\
                 <@{SNOWFLAKE}> asked to roll back `app:prod`\\. Reason\\: \\# broke\n\\- it\n\\@{z}here\n\
                 **Target\\:** `sha256:abc`\n\
                 **Approvals\\:** approved by <@42>\\, <@{SNOWFLAKE}>\n\
                 -# A second person approves with `/rollback approve rb-7`\\."
            )
        );
        assert!(read(&render_message(&message)).is_ok());
        assert_eq!(mentioned_users(&message), vec![123_456_789_012_345_678, 42]);
        assert_eq!(
            mentioned_users_in(
                &Text::new()
                    .mention("7")
                    .mention("x")
                    .mention("7")
                    .mention("8")
            ),
            vec![7, 8]
        );
        let crowd = (1..=150).fold(Text::new(), |text, id| text.mention(id.to_string()));
        assert_eq!(mentioned_users_in(&crowd), (1..=100).collect::<Vec<u64>>());
        assert_eq!(
            render_message(&Message {
                fallback: Text::new(),
                blocks: vec![]
            }),
            ""
        );
    }

    fn text_message(text: Text) -> Message {
        Message::text(text)
    }

    #[test]
    fn long_content_is_cut_whole_and_says_so() {
        let a = |n: usize| "a".repeat(n);
        // (what, message, expected content)
        let lines: String = (0..30).map(|i| format!("{i:02}{}\n", a(98))).collect();
        let kept_lines: String = (0..19).map(|i| format!("{i:02}{}\n", a(98))).collect();
        let cases: Vec<(&str, Message, String)> = vec![
            (
                "exactly the limit",
                text_message(Text::from(a(2000))),
                a(2000),
            ),
            (
                "one line too long",
                text_message(Text::from(a(2001))),
                format!("{}…", a(1998)),
            ),
            (
                "many lines: cut at a line break",
                text_message(Text::from(lines)),
                format!("{}\n…", kept_lines.trim_end()),
            ),
            (
                "an escape at the edge is not split",
                text_message(Text::from(format!("{}*bc", a(1997)))),
                format!("{}…", a(1997)),
            ),
            (
                "a mention at the edge is left out",
                text_message(Text::from(a(1990)).mention(SNOWFLAKE).plain(a(10))),
                format!("{}…", a(1990)),
            ),
            (
                "a link at the edge is left out",
                text_message(
                    Text::from(a(1990))
                        .link("https://example.com/x")
                        .plain(a(10)),
                ),
                format!("{}…", a(1990)),
            ),
            (
                "a bold span is closed",
                text_message(Text::new().bold(a(3000))),
                format!("**{}**…", a(1994)),
            ),
            (
                "a code span is closed",
                text_message(Text::from("x").code(a(3000))),
                format!("x`{}`…", a(1995)),
            ),
            (
                "a span with no room inside is left out",
                text_message(Text::from(a(1995)).bold("bbbb")),
                format!("{}…", a(1995)),
            ),
            (
                "a span that opens but has no room inside is left out",
                text_message(Text::from(a(1994)).bold("bbbb")),
                format!("{}…", a(1994)),
            ),
            (
                "a short last line is not worth the rest",
                text_message(Text::from(format!("{}\n{}", a(10), a(3000)))),
                format!("{}\n{}…", a(10), a(1987)),
            ),
        ];
        for (what, message, expected) in cases {
            let content = render_message(&message);
            assert_eq!(content, expected, "{what}");
            assert!(content.chars().count() <= MAX_CONTENT_CHARS, "{what}");
            assert!(read(&content).is_ok(), "{what}: {:?}", read(&content));
        }
    }

    /// Words with more than their share of what Discord reads as markup.
    fn markup_words() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[-<>@#:*_~|`\\\\\\[\\]()!&+.=/a-z0-9 \n\u{200B}]{0,40}",
            proptest::collection::vec(
                prop_oneof![
                    Just("@everyone"),
                    Just("@HERE"),
                    Just("@\u{200B}"),
                    Just("<@123>"),
                    Just("<#1>"),
                    Just("<t:1:R>"),
                    Just("<:e:1>"),
                    Just("**"),
                    Just("__"),
                    Just("~~"),
                    Just("||"),
                    Just("`"),
                    Just("```"),
                    Just("[x](https://e.x)"),
                    Just("\n# "),
                    Just("\n-# "),
                    Just("\n> "),
                    Just("\n1. "),
                    Just("\\"),
                    Just("a"),
                    Just(" "),
                ],
                0..12,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    fn any_span() -> impl Strategy<Value = Span> {
        prop_oneof![
            markup_words().prop_map(Span::Plain),
            markup_words().prop_map(Span::Bold),
            markup_words().prop_map(Span::Code),
            markup_words().prop_map(Span::Mention),
            "[1-9][0-9]{0,19}".prop_map(Span::Mention),
            markup_words().prop_map(Span::Channel),
            "[0-9]{1,20}".prop_map(Span::Channel),
            markup_words().prop_map(Span::Link),
            "https?://[-<>@!#&|^a-zA-Z0-9:/ .*_`]{0,24}".prop_map(Span::Link),
            "[a-z \n]{0,700}".prop_map(Span::Plain),
            "[a-z \n]{0,700}".prop_map(Span::Bold),
            // Long spans without line breaks, so that cuts fall inside them.
            "[a-z ]{300,1500}".prop_map(Span::Bold),
            "[a-z ]{300,1500}".prop_map(Span::Code),
        ]
    }

    fn any_text() -> impl Strategy<Value = Text> {
        proptest::collection::vec(any_span(), 0..6)
            .prop_map(|spans| spans.into_iter().fold(Text::new(), Text::push))
    }

    fn any_block() -> impl Strategy<Value = Block> {
        prop_oneof![
            markup_words().prop_map(|text| Block::Header { text }),
            any_text().prop_map(|text| Block::Text { text }),
            proptest::collection::vec((markup_words(), any_text()), 0..4)
                .prop_map(|fields| Block::Fields { fields }),
            any_text().prop_map(|text| Block::Context { text }),
            Just(Block::Actions { buttons: vec![] }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Plain words are shown as written and are never markup, a mention or a broadcast.
        #[test]
        fn plain_words_stay_words(words in markup_words()) {
            let rendered = render(&Text::from(words.as_str()));
            prop_assert_eq!(&rendered, &escape(&words));
            prop_assert_eq!(unescape(&rendered), Ok(words.clone()), "{}", rendered);
            let view = unescaped_view(&rendered);
            for markup in ["<@", "<#", "<t:", "**", "__", "~~", "||", "`", "](", "@"] {
                prop_assert!(!view.contains(markup), "{:?} in {:?}", markup, rendered);
            }
            prop_assert!(!view.chars().any(|c| c.is_ascii_punctuation()), "{:?}", rendered);
            let lower = rendered.to_lowercase();
            prop_assert!(!lower.contains("@everyone") && !lower.contains("@here"), "{:?}", rendered);
        }

        /// Whatever the spans hold, the only mentions, channel links and links are those of
        /// rollbot's spans with valid ids and URLs, in order, and every span is closed.
        #[test]
        fn only_rollbots_spans_make_mentions_and_links(text in any_text()) {
            let rendered = render(&text);
            let tokens = read(&rendered);
            prop_assert!(tokens.is_ok(), "{:?}", tokens);
            let found: Vec<Token> = tokens
                .unwrap_or_default()
                .into_iter()
                .filter(|t| matches!(t, Token::Mention(_) | Token::Channel(_) | Token::Link(_)))
                .collect();
            let expected: Vec<Token> = text
                .spans()
                .iter()
                .filter_map(|span| match span {
                    Span::Mention(id) => snowflake(id).map(Token::Mention),
                    Span::Channel(id) => snowflake(id).map(Token::Channel),
                    Span::Link(url) if is_plain_url(url) && !names_broadcast(url) => {
                        Some(Token::Link(url.clone()))
                    }
                    _ => None,
                })
                .collect();
            prop_assert_eq!(found, expected, "{}", rendered);
        }

        /// Any message fits Discord's limit, whole markup only; one that fits is not cut.
        #[test]
        fn any_message_fits_and_is_cut_cleanly(
            blocks in proptest::collection::vec(any_block(), 0..8)
        ) {
            let message = Message { fallback: Text::new(), blocks };
            let whole = message_pieces(&message).concat();
            let content = render_message(&message);
            prop_assert!(content.chars().count() <= MAX_CONTENT_CHARS);
            let tokens = read(&content);
            prop_assert!(tokens.is_ok(), "{:?}", tokens);
            if whole.chars().count() <= MAX_CONTENT_CHARS {
                prop_assert_eq!(content, whole);
            } else {
                prop_assert!(content.ends_with('…'), "{:?}", content);
            }
        }
    }
}
