//! Tests of the Discord markdown renderer: escaping, mentions, links, the 2000-character cut.

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
        // An empty link shows nothing, so the code spans around it are one (found by proptest).
        (Text::new().code("a").link("").code("b"), "`ab`".into()),
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
