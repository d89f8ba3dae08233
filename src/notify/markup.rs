//! Untrusted text made safe for each place rollbot writes it: GitHub Discussions (markdown
//! bodies, plain titles) and the Docker Hub description (markdown between rollbot's marker
//! comments).
//!
//! Reasons, people's names, error texts and health-check output come from people and from other
//! services. Rendered into a template they must stay text: no markup, no HTML (so no `<!--`,
//! `-->`, `--!>` and none of rollbot's banner markers), no GitHub `@user` / `@org/team`
//! mentions or `#123` / `GH-123` / `owner/repo#1` references, and nothing that leaves the block
//! the template put them in (a table cell, a list item, a paragraph, a code span). URLs may still
//! be autolinked.
//!
//! How:
//! - Line breaks and other control characters become spaces, and the value is trimmed: every
//!   block-level construct (fence, heading, list, blockquote, HTML block, table row) needs a
//!   line of its own, so a one-line value cannot open or close one.
//! - Markdown's inline punctuation gets a backslash (CommonMark lets any ASCII punctuation be
//!   escaped; the reader sees the character): `` \ ` * _ [ ] < > # + - = | ~ & $ ``, and a `.`
//!   or `)` after leading digits (`1.` starts a list). With `<` and `>` escaped, the raw text
//!   holds neither `<!--` nor `-->` nor `--!>`, so it cannot open or close an HTML comment or
//!   spell a marker; with `&` escaped, `&#64;` stays those five characters instead of an `@`.
//!   Inside a code span a backslash is literal, so a value a custom template puts in backticks
//!   may show backslashes, but still cannot end the span into live markup: what follows the
//!   span is escaped too.
//! - GitHub: a zero-width space (U+200B) after every `@`, after every `#` and inside `GH-`.
//!   GitHub finds mentions and references in the rendered text (after backslashes and entities
//!   are resolved), so escaping cannot stop them; a zero-width space between `@` and the name
//!   can, stays invisible and keeps the text readable. (Renovate's `sanitizeMarkdown` does the
//!   same; wrapping values in code spans would also work but reads badly in a sentence.)

/// Where a rendered template goes; it decides how untrusted values are made safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A chat message: the chat adapter escapes its own platform's markup.
    Chat,
    /// A GitHub Discussion title: plain text, one line.
    GitHubTitle,
    /// A GitHub Discussion body or comment: GitHub-flavoured markdown.
    GitHubMarkdown,
    /// The Docker Hub description: markdown.
    DockerHubMarkdown,
}

/// U+200B ZERO WIDTH SPACE: breaks GitHub's mention and reference patterns, invisible.
pub const ZERO_WIDTH_SPACE: char = '\u{200B}';

impl Output {
    /// `text` made safe for this output.
    pub fn escape(self, text: &str) -> String {
        match self {
            Output::Chat => text.to_owned(),
            Output::GitHubTitle => github_title(text),
            Output::GitHubMarkdown => markdown(text, true),
            Output::DockerHubMarkdown => markdown(text, false),
        }
    }
}

/// One line: control characters (line breaks, tabs, NUL, …) and Unicode line and paragraph
/// separators become spaces; leading and trailing whitespace goes.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The punctuation that can start inline markup, HTML, or (at the start of a line) a block.
fn is_markdown_punctuation(c: char) -> bool {
    matches!(
        c,
        '\\' | '`'
            | '*'
            | '_'
            | '['
            | ']'
            | '<'
            | '>'
            | '#'
            | '+'
            | '-'
            | '='
            | '|'
            | '~'
            | '&'
            | '$'
    )
}

/// Whether GitHub would read what follows as a mention or a reference: after `@`, after `#`,
/// and after the `-` of `GH-` (any case).
fn breaks_github_reference(c: char, before: &[char]) -> bool {
    match c {
        '@' | '#' => true,
        '-' => {
            matches!(before, [.., g, h] if g.eq_ignore_ascii_case(&'g') && h.eq_ignore_ascii_case(&'h'))
        }
        _ => false,
    }
}

fn markdown(text: &str, github: bool) -> String {
    let line = one_line(text);
    let mut out = String::with_capacity(line.len() + 16);
    let mut seen: Vec<char> = Vec::with_capacity(line.len());
    let mut only_digits_so_far = true;
    for c in line.chars() {
        let list_marker = only_digits_so_far && !seen.is_empty() && matches!(c, '.' | ')');
        if is_markdown_punctuation(c) || list_marker {
            out.push('\\');
        }
        out.push(c);
        if github && breaks_github_reference(c, &seen) {
            out.push(ZERO_WIDTH_SPACE);
        }
        only_digits_so_far &= c.is_ascii_digit();
        seen.push(c);
    }
    out
}

fn github_title(text: &str) -> String {
    let line = one_line(text);
    let mut out = String::with_capacity(line.len() + 8);
    let mut seen: Vec<char> = Vec::with_capacity(line.len());
    for c in line.chars() {
        out.push(c);
        if breaks_github_reference(c, &seen) {
            out.push(ZERO_WIDTH_SPACE);
        }
        seen.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_output_gets_its_own_escaping() {
        let z = ZERO_WIDTH_SPACE;
        let cases: &[(Output, &str, String)] = &[
            (Output::Chat, "a *b* @c", "a *b* @c".to_owned()),
            (
                Output::GitHubMarkdown,
                "ping @alice and @acme/sre about #12, GH-7 and acme/app#3",
                format!(
                    "ping @{z}alice and @{z}acme/sre about \\#{z}12, GH\\-{z}7 and acme/app\\#{z}3"
                ),
            ),
            (
                Output::GitHubMarkdown,
                "x <!-- rollbot:banner:end --> y --!> z",
                "x \\<!\\-\\- rollbot:banner:end \\-\\-\\> y \\-\\-!\\> z".to_owned(),
            ),
            (
                Output::GitHubMarkdown,
                "line one\n```\n# heading\r\n| a | b |",
                format!("line one \\`\\`\\` \\#{z} heading  \\| a \\| b \\|"),
            ),
            (
                Output::GitHubMarkdown,
                "1. not a list",
                "1\\. not a list".to_owned(),
            ),
            (
                Output::GitHubMarkdown,
                "v1.2.3 fails",
                "v1.2.3 fails".to_owned(),
            ),
            (
                Output::GitHubMarkdown,
                "&#64;alice",
                format!("\\&\\#{z}64;alice"),
            ),
            (
                Output::DockerHubMarkdown,
                "x <!-- rollbot:banner:end --> [y](http://e) @bob",
                "x \\<!\\-\\- rollbot:banner:end \\-\\-\\> \\[y\\](http://e) @bob".to_owned(),
            ),
            (
                Output::GitHubTitle,
                "  CLI crashes\n@alice #4 gh-5 *x*  ",
                format!("CLI crashes @{z}alice #{z}4 gh-{z}5 *x*"),
            ),
        ];
        for (output, input, expected) in cases {
            assert_eq!(&output.escape(input), expected, "{output:?} {input:?}");
        }
    }

    /// What a reader sees: backslash escapes resolved, zero-width spaces invisible.
    fn as_read(escaped: &str) -> String {
        let mut out = String::new();
        let mut chars = escaped.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                ZERO_WIDTH_SPACE => {}
                c => out.push(c),
            }
        }
        out
    }

    /// The characters as markdown reads them: a backslash escape is the character it escapes.
    fn resolved(escaped: &str) -> Vec<char> {
        let mut out = Vec::new();
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            out.extend(if c == '\\' { chars.next() } else { Some(c) });
        }
        out
    }

    /// Every special character is escaped (an odd run of backslashes before it), the raw text
    /// can neither open nor close an HTML comment, and (GitHub) nothing a mention or a
    /// reference needs is left.
    fn assert_inert(escaped: &str, github: bool) {
        let mut backslashes = 0;
        for c in escaped.chars() {
            if c == '\\' {
                backslashes += 1;
                continue;
            }
            assert!(
                !is_markdown_punctuation(c) || backslashes % 2 == 1,
                "unescaped {c:?} in {escaped:?}"
            );
            assert!(!c.is_control(), "control character in {escaped:?}");
            backslashes = 0;
        }
        for comment in ["<!--", "-->", "--!>"] {
            assert!(!escaped.contains(comment), "{comment} in {escaped:?}");
        }
        if github {
            let read = resolved(escaped);
            for (i, &c) in read.iter().enumerate() {
                if breaks_github_reference(c, &read[..i]) {
                    assert_eq!(read.get(i + 1), Some(&ZERO_WIDTH_SPACE), "{escaped:?}");
                }
            }
        }
    }

    pub(crate) fn untrusted() -> impl Strategy<Value = String> {
        // Arbitrary text, and text built from the pieces attacks are made of.
        let pieces = prop::sample::select(vec![
            "<!--",
            "-->",
            "--!>",
            "<!-- rollbot:banner:end -->",
            "<!-- ROLLBOT:banner:start -->",
            "@alice",
            "@acme/sre",
            "#12",
            "GH-3",
            "acme/app#4",
            "```",
            "`",
            "|",
            "\n",
            "\r\n",
            "\u{2028}",
            "1.",
            "- ",
            "> ",
            "# ",
            "&#64;",
            "&lt;",
            "\\",
            "*",
            "_",
            "[x](y)",
            "$x$",
            " ",
            "a",
            "é",
            "\u{200B}",
            "<!-- rollbot:banner:start -->",
            "<!-- rollbot:banner:start rb-17 0123456789abcdef -->",
            "<!-- rollbot:banner:end rb-17 0123456789abcdef -->",
            "\n\n",
        ]);
        prop_oneof![
            any::<String>(),
            prop::collection::vec(pieces, 0..24).prop_map(|p| p.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn escaped_text_reads_the_same_and_holds_no_markup(text in untrusted()) {
            let line = one_line(&text);
            for (output, github) in [(Output::GitHubMarkdown, true), (Output::DockerHubMarkdown, false)] {
                let escaped = output.escape(&text);
                assert_inert(&escaped, github);
                prop_assert_eq!(as_read(&escaped), line.replace(ZERO_WIDTH_SPACE, ""));
            }
            let title = Output::GitHubTitle.escape(&text);
            prop_assert!(!title.contains('\n') && !title.contains('\r'));
            prop_assert_eq!(title.replace(ZERO_WIDTH_SPACE, ""), line.replace(ZERO_WIDTH_SPACE, ""));
        }
    }
}
