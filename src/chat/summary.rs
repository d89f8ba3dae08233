//! The chat summary (the `chat_summary` template's output) as [`Text`].
//!
//! The template, rollbot's built-in one or the operator's own, is trusted markup: `*bold*`,
//! `` `code` `` and `<@user-id>` in it are formatting and mentions. The values it shows (a
//! reason, an error quoting a registry or a health check, people's names) are not, and minijinja
//! pastes them into the same string. So each untrusted value goes into the template between two
//! private-use marks, and reading the output back, every character that came from a value is
//! plain text however it looks; only the template's own characters are read as markup. A mark
//! out of place (a filter that cut or reversed a value) makes the rest of the output plain.

use std::time::Duration;

use super::text::{Span, Text};
use crate::domain::record::RollbackRecord;
use crate::domain::rollback::Timestamp;
use crate::notify::templates::{Context, Links, TemplateName, Templates, Untrusted};

/// Opens a value in the rendered template.
const OPEN: char = '\u{E000}';
/// Closes it.
const CLOSE: char = '\u{E001}';

/// The summary of `record`'s end (`event` is `succeeded` or `failed`).
///
/// # Errors
/// The template failed to render (as text).
pub fn render(
    templates: &Templates,
    record: &RollbackRecord,
    event: &str,
    rto: Duration,
    now: Timestamp,
) -> Result<Text, String> {
    let context = marked(Context::of(record, event, rto, Links::default(), now));
    let output = templates.render(TemplateName::ChatSummary, &context)?;
    Ok(parse(&output))
}

/// A value between the marks (any marks inside it replaced). Empty stays empty, so a template's
/// `{{ error or "…" }}` still sees nothing.
fn mark(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let inner: String = value
        .chars()
        .map(|c| {
            if c == OPEN || c == CLOSE {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    format!("{OPEN}{inner}{CLOSE}")
}

/// What the template grammar accepts as a user id in `<@…>`.
fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `context` with every untrusted value marked (the values
/// [`Context::escaped`](crate::notify::templates::Context::escaped) escapes for GitHub). The
/// requester's id stays as it is when it is an id (so `<@{{ requester.id }}>` mentions them),
/// and is marked otherwise.
fn marked(context: Context) -> Context {
    context.map_untrusted(|kind, value| match kind {
        Untrusted::RequesterId if is_id(value) => value.to_owned(),
        _ => mark(value),
    })
}

/// One character of the output, and whether the template wrote it (markup) or a value did.
#[derive(Clone, Copy)]
struct Char {
    c: char,
    markup: bool,
}

/// The output's characters without the marks, each knowing where it came from.
fn classify(output: &str) -> Vec<Char> {
    let mut chars = Vec::with_capacity(output.len());
    let mut in_value = false;
    let mut broken = false;
    for c in output.chars() {
        match c {
            OPEN | CLOSE if broken => {}
            OPEN if !in_value => in_value = true,
            CLOSE if in_value => in_value = false,
            // A mark out of place: nothing after it is trusted.
            OPEN | CLOSE => broken = true,
            c => chars.push(Char {
                c,
                markup: !in_value && !broken,
            }),
        }
    }
    chars
}

/// Reads the template's markup; values are plain.
fn parse(output: &str) -> Text {
    let chars = classify(output);
    let mut text = Text::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        let Char { c, markup } = chars[i];
        let span = if markup {
            match c {
                '<' => mention(&chars[i..]),
                '`' => enclosed(&chars[i..], '`', true),
                '*' => enclosed(&chars[i..], '*', false),
                _ => None,
            }
        } else {
            None
        };
        match span {
            Some((span, used)) => {
                text = text.plain(std::mem::take(&mut plain)).push(span);
                i += used;
            }
            None => {
                plain.push(c);
                i += 1;
            }
        }
    }
    text.plain(plain)
}

/// `<@id>` written by the template at the start of `chars`: the mention and its length.
fn mention(chars: &[Char]) -> Option<(Span, usize)> {
    if !matches!(
        chars.get(1),
        Some(Char {
            c: '@',
            markup: true
        })
    ) {
        return None;
    }
    let end = chars
        .iter()
        .position(|ch| ch.c == '>' || !ch.markup)
        .filter(|&end| chars[end].markup && chars[end].c == '>')?;
    let id: String = chars[2..end].iter().map(|ch| ch.c).collect();
    is_id(&id).then(|| (Span::Mention(id), end + 1))
}

/// `` `code` `` or `*bold*` opened by the template at the start of `chars` and closed by it
/// later (bold on the same line): the span (its words as they are, values included) and its
/// length.
fn enclosed(chars: &[Char], delimiter: char, code: bool) -> Option<(Span, usize)> {
    let close = chars
        .iter()
        .enumerate()
        .skip(1)
        .take_while(|(_, ch)| code || ch.c != '\n')
        .find(|(_, ch)| ch.markup && ch.c == delimiter)
        .map(|(index, _)| index)?;
    if close == 1 {
        return None;
    }
    let words: String = chars[1..close].iter().map(|ch| ch.c).collect();
    let span = if code {
        Span::Code(words)
    } else {
        Span::Bold(words)
    };
    Some((span, close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> String {
        mark(text)
    }

    #[test]
    fn the_template_is_markup_and_values_are_plain() {
        let cases: Vec<(String, Text)> = vec![
            (
                format!("<@U1>: rb-1 FAILED: {}", value("<!channel> <@U2> *x* `y`")),
                Text::new()
                    .mention("U1")
                    .plain(": rb-1 FAILED: <!channel> <@U2> *x* `y`"),
            ),
            (
                format!("*Done* at `{}` by {}", value("sha`1"), value("*Bob*")),
                Text::new()
                    .bold("Done")
                    .plain(" at ")
                    .code("sha`1")
                    .plain(" by *Bob*"),
            ),
            (
                // A value cannot finish a mention the template began.
                format!("<@{}>", value("U1")),
                Text::from("<@U1>"),
            ),
            (
                // Nor open one that the template closes.
                format!("{}U1>", value("<@")),
                Text::from("<@U1>"),
            ),
            (
                "<!here> <#C1> <https://e|x> <@bad id> * lone ` tick".to_owned(),
                Text::from("<!here> <#C1> <https://e|x> <@bad id> * lone ` tick"),
            ),
            (
                "*not\nbold* `multi\nline`".to_owned(),
                Text::from("*not\nbold* ").code("multi\nline"),
            ),
        ];
        for (output, expected) in cases {
            assert_eq!(parse(&output), expected, "{output:?}");
        }
    }

    #[test]
    fn a_mark_out_of_place_makes_the_rest_plain() {
        // A value reversed by a filter: its closing mark comes first.
        let reversed: String = value(">1U@<").chars().rev().collect();
        assert_eq!(
            parse(&format!("*a* {reversed} *b*")),
            Text::new().bold("a").plain(" <@U1> *b*")
        );
        // A value cut short: it never closes.
        let cut: String = value("<@U1> x").chars().take(4).collect();
        assert_eq!(parse(&format!("{cut} <@U2>")), Text::from("<@U <@U2>"));
    }

    #[test]
    fn marks_inside_values_cannot_end_them() {
        let sneaky = format!("{CLOSE}<@U9>{OPEN}");
        let output = format!("x {}", mark(&sneaky));
        assert_eq!(parse(&output), Text::from("x \u{FFFD}<@U9>\u{FFFD}"));
        assert_eq!(mark(""), "");
    }
}
