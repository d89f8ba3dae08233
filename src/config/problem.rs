//! What is wrong with a configuration: one [`ConfigProblem`] per key (its path, what is wrong,
//! the layer that set it), all of them together in a [`ConfigError`], and the "did you mean"
//! suggestion for misspelt keys.

use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `images.app.checks[0].timeout`.
    pub path: String,
    pub message: String,
    /// The layer the value came from (a file path, "the environment"), when known.
    pub origin: Option<String>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (set in {origin})")?;
        }
        Ok(())
    }
}

/// All problems found in one load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
    /// `log.format` is `json` as far as the config could be read: a daemon reports this error
    /// as a JSON log line, like everything else it logs.
    pub json_logs: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid config: {one}"),
            many => {
                write!(f, "invalid config ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// The problems in key-path order, each once.
    pub(super) fn new(mut problems: Vec<ConfigProblem>, json_logs: bool) -> ConfigError {
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        problems.dedup();
        ConfigError {
            problems,
            json_logs,
        }
    }

    pub(super) fn single(path: &str, message: String, json_logs: bool) -> ConfigError {
        ConfigError {
            problems: vec![ConfigProblem {
                path: path.to_owned(),
                message,
                origin: None,
            }],
            json_logs,
        }
    }
}

/// "unknown key" with the known key closest to `key` when it is a likely typo, else the list
/// of known keys.
pub fn unknown(what: &str, key: &str, known: &[&str]) -> String {
    match closest(key, known) {
        Some(suggestion) => format!("unknown {what} (did you mean '{suggestion}'?)"),
        None => format!("unknown {what} (known {what}s here: {})", known.join(", ")),
    }
}

/// The known key closest to a misspelt one, if it is close enough to be a likely typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::unknown;

    #[test]
    fn a_likely_typo_gets_a_suggestion_and_anything_else_the_known_keys() {
        assert_eq!(
            unknown("key", "tagz", &["rto", "tags"]),
            "unknown key (did you mean 'tags'?)"
        );
        assert_eq!(
            unknown("key", "colour", &["rto", "tags"]),
            "unknown key (known keys here: rto, tags)"
        );
    }
}
