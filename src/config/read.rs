//! The typed readers every section shares: [`Checked`] (a field's value or what is wrong with
//! it, with its key path and origin), [`HumanDuration`], and [`Problems`], which turns checked
//! fields into values (durations within a range, numbers within a range, tags, approvers, API
//! URLs) and collects what is wrong on the way.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::de::CHECKED;
use super::problem::ConfigProblem;
use crate::domain::model::Tag;
use crate::domain::policy::Approver;

/// Units for the ranges every duration key has (`Problems::duration`).
pub const MS: Duration = Duration::from_millis(1);
pub const S: Duration = Duration::from_secs(1);
pub const MIN: Duration = Duration::from_secs(60);
pub const H: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// One field of a section as the layers set it: its value, or that no layer sets it, or why
/// what a layer set is not a value of its type; with its key path and the layer it came from.
/// A section's fields are all `Checked`, so one bad value never hides the next.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    path: String,
    origin: Option<String>,
    state: State<T>,
}

#[derive(Debug, Clone)]
enum State<T> {
    Set(T),
    Unset,
    Invalid(String),
}

impl<T> Checked<T> {
    /// The dotted key path, e.g. `slack.bot_token_file`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key: the last part of the path.
    pub fn key(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// The layer that set it; `None` for the compiled-in defaults (and when unset).
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// A layer sets it (to a valid value or not).
    pub fn is_set(&self) -> bool {
        !matches!(self.state, State::Unset)
    }

    /// Set by a layer other than the compiled-in defaults: the operator's own choice.
    pub fn is_chosen(&self) -> bool {
        self.is_set() && self.origin.is_some()
    }

    /// The value, if it is set and valid.
    pub fn value(&self) -> Option<&T> {
        match &self.state {
            State::Set(value) => Some(value),
            State::Unset | State::Invalid(_) => None,
        }
    }

    /// A problem of this key.
    pub fn problem(&self, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            path: self.path.clone(),
            message: message.into(),
            origin: self.origin.clone(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(CHECKED, CheckedVisitor(PhantomData))
    }
}

struct CheckedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for CheckedVisitor<T> {
    type Value = Checked<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration value")
    }

    /// The config reader's protocol (see `de.rs`): `path`, `origin`, then `value` when set. A
    /// value that cannot be read is kept as the reason, so the read goes on.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked<T>, A::Error> {
        let mut checked = Checked {
            path: String::new(),
            origin: None,
            state: State::Unset,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "path" => checked.path = map.next_value()?,
                "origin" => {
                    let origin: String = map.next_value()?;
                    checked.origin = (!origin.is_empty()).then_some(origin);
                }
                _ => {
                    checked.state = match map.next_value::<T>() {
                        Ok(value) => State::Set(value),
                        Err(error) => State::Invalid(error.to_string()),
                    };
                }
            }
        }
        Ok(checked)
    }

    /// Any other deserializer: the plain value, no location.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Checked<T>, D::Error> {
        Ok(Checked {
            path: String::new(),
            origin: None,
            state: State::Set(T::deserialize(d)?),
        })
    }
}

/// A duration as written ("30s", "15m", "1h 30m"), with its text for messages.
#[derive(Debug, Clone)]
pub struct HumanDuration {
    pub text: String,
    pub duration: Duration,
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match humantime::parse_duration(&text) {
            Ok(duration) => Ok(HumanDuration { text, duration }),
            Err(error) => Err(de::Error::custom(format!(
                "'{text}' is not a duration ({error}); write e.g. \"30s\", \"15m\", \"1h\""
            ))),
        }
    }
}

/// The problems of one validation, and the readers that add to them. Each reader returns the
/// value, or `None` after recording why not; `validate` goes on reading the other fields and
/// only then gives up ([`Problems::finish`]).
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn push(&mut self, problem: ConfigProblem) {
        self.0.push(problem);
    }

    /// The value of what was read as a whole (a section, or several), keeping its problems
    /// with these.
    pub fn section<T>(&mut self, read: Result<T, Vec<ConfigProblem>>) -> Option<T> {
        read.map_err(|problems| self.0.extend(problems)).ok()
    }

    /// A problem of `field`.
    pub fn add<T>(&mut self, field: &Checked<T>, message: impl Into<String>) {
        self.push(field.problem(message));
    }

    /// The value, which must be set: the defaults set every key that has a default, so an
    /// unset one is one the operator must give (`images.<alias>.image`).
    pub fn required<T: Clone>(&mut self, field: &Checked<T>) -> Option<T> {
        self.get(field).cloned()
    }

    /// Like [`Problems::required`], by reference (for tables and lists of tables).
    pub fn get<'f, T>(&mut self, field: &'f Checked<T>) -> Option<&'f T> {
        match &field.state {
            State::Set(value) => Some(value),
            State::Unset => {
                self.add(field, "missing");
                None
            }
            State::Invalid(why) => {
                self.add(field, why.clone());
                None
            }
        }
    }

    /// The value, or `None` when it is unset (or invalid, which is recorded).
    pub fn optional<T: Clone>(&mut self, field: &Checked<T>) -> Option<T> {
        if field.is_set() {
            self.required(field)
        } else {
            None
        }
    }

    /// The value, turned into `U` by `parse` (whose error is the problem's message).
    pub fn parse<T: Clone, U>(
        &mut self,
        field: &Checked<T>,
        parse: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        let value = self.required(field)?;
        parse(value).map_err(|why| self.add(field, why)).ok()
    }

    /// A duration within `min..=max`: every duration key has a range, so a value like
    /// "8000y" (which once passed and killed the engine, which could not format a time past
    /// the year 9999) is refused naming the key and the range.
    pub fn duration(
        &mut self,
        field: &Checked<HumanDuration>,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let HumanDuration { text, duration } = self.required(field)?;
        if (min..=max).contains(&duration) {
            return Some(duration);
        }
        self.add(
            field,
            format!(
                "'{text}' is out of range: between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
        None
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, field: &Checked<i64>, min: u32, max: u32) -> Option<u32> {
        let n = self.required(field)?;
        match u32::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.add(field, format!("{n} is not between {min} and {max}"));
                None
            }
        }
    }

    /// Floating tags, each valid and listed once (every bad one is reported).
    pub fn tags(&mut self, field: &Checked<Vec<String>>) -> Option<Vec<Tag>> {
        let texts = self.required(field)?;
        let mut tags = Vec::new();
        let mut ok = true;
        for text in texts {
            match Tag::parse(&text) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(tag) => {
                    self.add(field, format!("tag '{tag}' is listed twice"));
                    ok = false;
                }
                Err(error) => {
                    self.add(field, error.to_string());
                    ok = false;
                }
            }
        }
        ok.then_some(tags)
    }

    /// Approvers: user ids and `group:<name>`.
    pub fn approvers(&mut self, field: &Checked<Vec<String>>) -> Option<Vec<Approver>> {
        let texts = self.required(field)?;
        let approvers: Result<Vec<Approver>, String> =
            texts.iter().map(|text| Approver::parse(text)).collect();
        approvers.map_err(|why| self.add(field, why)).ok()
    }

    /// An https URL (plain http only on loopback, for tests), without a trailing slash.
    pub fn api_url(&mut self, field: &Checked<String>) -> Option<String> {
        self.parse(field, |url| {
            let parsed = reqwest::Url::parse(&url).ok();
            let ok = parsed.as_ref().is_some_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
            });
            if ok {
                Ok(url.trim_end_matches('/').to_owned())
            } else {
                Err(format!(
                    "'{url}' must be an https URL (plain http only on loopback, for tests)"
                ))
            }
        })
    }

    /// `value` when nothing was wrong, else every problem.
    ///
    /// # Errors
    /// Every problem recorded.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ConfigProblem>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => {
                debug_assert!(!self.0.is_empty(), "a reader gave up without saying why");
                Err(self.0)
            }
        }
    }
}
