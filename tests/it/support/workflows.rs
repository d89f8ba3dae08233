//! GitHub workflow and action files under `deploy/github-actions/` read as YAML, and the
//! `rollbot …` command lines their steps run, checked against rollbot's own clap definitions.

use std::path::Path;

pub use yaml_rust2::Yaml;

/// Values for the variables CI command lines use, as GitHub Actions would set them.
pub const CI_VARS: &[(&str, &str)] = &[
    ("IMAGE", "ghcr.io/acme/app"),
    (
        "DIGEST",
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    ("VERSION", "v1.2.3"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_REPOSITORY", "acme/app"),
    ("GITHUB_RUN_ID", "1"),
    ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
];

/// The text of a file under the repository root.
pub fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one YAML document of a file under the repository root.
pub fn load(relative: &str) -> Yaml {
    let mut documents = yaml_rust2::YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"));
    assert_eq!(documents.len(), 1, "{relative} holds one YAML document");
    documents.remove(0)
}

/// A string value, or a panic naming what was expected.
pub fn text<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {node:?}"))
}

/// A sequence, or a panic naming what was expected.
pub fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {node:?}"))
}

/// Every step of a workflow (each job's, jobs in file order) or of a composite action.
pub fn steps(document: &Yaml) -> Vec<&Yaml> {
    if let Some(jobs) = document["jobs"].as_hash() {
        jobs.values()
            .flat_map(|job| list(&job["steps"], "a job's steps"))
            .collect()
    } else {
        list(&document["runs"]["steps"], "runs.steps")
            .iter()
            .collect()
    }
}

/// A step's `uses:` reference, without the `@ref` (`docker/build-push-action`).
pub fn action_of(step: &Yaml) -> Option<&str> {
    step["uses"]
        .as_str()
        .map(|uses| uses.split('@').next().unwrap_or(uses))
}

/// The position and step of the one step using `action`, or a panic.
pub fn step_using<'a>(steps: &[&'a Yaml], action: &str) -> (usize, &'a Yaml) {
    let found: Vec<(usize, &Yaml)> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| action_of(step) == Some(action))
        .map(|(i, step)| (i, *step))
        .collect();
    assert_eq!(found.len(), 1, "exactly one step uses {action}");
    found[0]
}

/// The `rollbot …` command lines of a shell script (or of a whole workflow file: a line's
/// `run: ` prefix is dropped), each with its `\` continuation lines joined, in order.
pub fn rollbot_commands(script: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.trim();
        let line = line.strip_prefix("run: ").unwrap_or(line);
        if current.is_empty() && !line.starts_with("rollbot ") {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

/// The `rollbot …` command lines of every `run:` step, in step order, each with the position
/// of its step.
pub fn step_rollbot_commands(steps: &[&Yaml]) -> Vec<(usize, String)> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| step["run"].as_str().map(|script| (i, script)))
        .flat_map(|(i, script)| rollbot_commands(script).into_iter().map(move |c| (i, c)))
        .collect()
}

/// The words the shell makes of a simple command line: split on whitespace outside double
/// quotes, quotes removed, `$NAME` and `${NAME}` replaced from `vars` (an unknown one panics:
/// the test must say what it stands for).
pub fn shell_words(line: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            '$' => {
                let braced = chars.next_if_eq(&'{').is_some();
                let mut name = String::new();
                while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    name.push(c);
                }
                if braced {
                    assert_eq!(chars.next(), Some('}'), "a plain ${{{name}}} in {line}");
                }
                let value = vars
                    .iter()
                    .find(|(key, _)| *key == name)
                    .unwrap_or_else(|| panic!("no value for ${name} in {line}"))
                    .1;
                word.get_or_insert_with(String::new).push_str(value);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "an unclosed quote in {line}");
    words.extend(word);
    words
}

/// Panics unless `command` (a `rollbot …` line, its variables given by `vars`) parses with
/// rollbot's own command-line definitions.
pub fn assert_parses(command: &str, vars: &[(&str, &str)]) -> rollbot::cli::Cli {
    let words = shell_words(command, vars);
    <rollbot::cli::Cli as clap::Parser>::try_parse_from(&words)
        .unwrap_or_else(|error| panic!("{command} is not a valid rollbot command: {error}"))
}
