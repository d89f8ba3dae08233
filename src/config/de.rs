//! The reader under every section: a serde `Deserializer` over the merged layers that knows
//! where it is, so serde's derive can read each section while every problem keeps its key path
//! and the file or variable that set it.
//!
//! What it adds to plain serde, and why:
//!
//! - **Unknown keys, all of them.** A struct asks for its table with the list of its fields
//!   (serde's derive passes it); every other key is recorded as a problem (with "did you mean"
//!   from that same list) and left out, so `deny_unknown_fields` never has to stop the read.
//! - **Every field is there.** A field the layers do not set is handed to the struct as
//!   *absent*: an `Option` reads it as `None`, a [`Checked`] as unset. So no field list is kept
//!   anywhere but in the structs, and a missing value is a problem of its own key. (Hence no
//!   `#[serde(default)]` and no field aliases in section types: defaults live in
//!   `config/default.toml` or in `validate`.)
//! - **A bad value does not end the read.** [`Checked`] asks for its key path and origin under
//!   a private name and keeps the value or the reason it is not one; the section's `validate`
//!   reports it with the others.
//! - **Values from the environment are strings**: `"true"`, `"5"` and `"a,b"` read as a bool, a
//!   number and a list.

use std::cell::RefCell;
use std::fmt;

use config::{Value, ValueKind};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::problem::{unknown, ConfigProblem};

/// The name under which [`Checked`] asks this deserializer for its path and origin.
///
/// [`Checked`]: super::read::Checked
pub(super) const CHECKED: &str = "$rollbot::config::Checked";

/// Reads `value` (at `path`; `None`: not set in any layer) into `T`. Unknown keys and a value
/// that cannot be read at all (a section that is not a table) go to `problems`.
pub(super) fn read<T: DeserializeOwned>(
    path: &str,
    value: Option<&Value>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    let unknown = RefCell::new(Vec::new());
    let result = T::deserialize(Node {
        value,
        path: path.to_owned(),
        unknown: &unknown,
    });
    problems.extend(unknown.into_inner());
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            problems.push(ConfigProblem {
                path: path.to_owned(),
                message: error.0,
                origin: value.and_then(origin),
            });
            None
        }
    }
}

/// The layer a value came from: `None` for the compiled-in defaults, the one layer without a
/// name. Merging keeps the origins of values but not of tables, so a table or list is named
/// by the first value in it that has one.
pub(super) fn origin(value: &Value) -> Option<String> {
    if let Some(origin) = value.origin() {
        return Some(origin.to_owned());
    }
    match &value.kind {
        ValueKind::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            keys.into_iter().find_map(|key| origin(&table[key]))
        }
        ValueKind::Array(items) => items.iter().find_map(origin),
        _ => None,
    }
}

/// `path.key`, with the key quoted when it is not a plain word (`registries."docker.io"`).
pub(super) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("\"{key}\"")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Why a value could not be read. Its text is the problem's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Error(String);

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error(message.to_string())
    }

    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error(format!("expected {expected}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        Error(format!("'{variant}' is not {}", one_of(expected)))
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => "expected".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// One value of the merged tree, where it is, and where unknown keys are recorded.
struct Node<'a> {
    /// `None`: a field no layer sets.
    value: Option<&'a Value>,
    path: String,
    unknown: &'a RefCell<Vec<ConfigProblem>>,
}

impl<'a> Node<'a> {
    fn kind(&self) -> Result<&'a ValueKind, Error> {
        self.value
            .map(|value| &value.kind)
            .ok_or_else(|| Error("missing".to_owned()))
    }

    fn child(&self, key: &str, value: Option<&'a Value>) -> Node<'a> {
        Node {
            value,
            path: join(&self.path, key),
            unknown: self.unknown,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::I64(n) => visitor.visit_i64(*n),
            ValueKind::U64(n) => visitor.visit_u64(*n),
            ValueKind::I128(n) => visitor.visit_i128(*n),
            ValueKind::U128(n) => visitor.visit_u128(*n),
            ValueKind::String(text) => match text.trim().parse::<i64>() {
                Ok(n) => visitor.visit_i64(n),
                Err(_) => Err(Error("expected a whole number".to_owned())),
            },
            _ => Err(Error("expected a whole number".to_owned())),
        }
    }
}

macro_rules! integers {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.integer(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::Nil => visitor.visit_unit(),
            ValueKind::Boolean(flag) => visitor.visit_bool(*flag),
            ValueKind::I64(n) => visitor.visit_i64(*n),
            ValueKind::I128(n) => visitor.visit_i128(*n),
            ValueKind::U64(n) => visitor.visit_u64(*n),
            ValueKind::U128(n) => visitor.visit_u128(*n),
            ValueKind::Float(x) => visitor.visit_f64(*x),
            ValueKind::String(text) => visitor.visit_str(text),
            ValueKind::Table(_) => self.deserialize_map(visitor),
            ValueKind::Array(_) => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::Boolean(flag) => visitor.visit_bool(*flag),
            ValueKind::String(text) if text == "true" => visitor.visit_bool(true),
            ValueKind::String(text) if text == "false" => visitor.visit_bool(false),
            _ => Err(Error("expected true or false".to_owned())),
        }
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::String(text) => visitor.visit_str(text),
            _ => Err(Error("expected a string".to_owned())),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value.map(|value| &value.kind) {
            None | Some(ValueKind::Nil) => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::Array(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
                node: &self,
            }),
            // A list from the environment: "latest,stable".
            ValueKind::String(text) => {
                let words = text
                    .split(',')
                    .map(str::trim)
                    .filter(|word| !word.is_empty())
                    .map(str::to_owned);
                de::value::SeqDeserializer::<_, Error>::new(words).deserialize_any(visitor)
            }
            _ => Err(Error("expected a list".to_owned())),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let ValueKind::Table(table) = self.kind()? else {
            return Err(Error("expected a table".to_owned()));
        };
        let mut entries: Vec<(&str, Option<&Value>)> = table
            .iter()
            .map(|(key, value)| (key.as_str(), Some(value)))
            .collect();
        entries.sort_by_key(|(key, _)| *key);
        visitor.visit_map(Entries {
            entries: entries.into_iter(),
            pending: None,
            node: &self,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let ValueKind::Table(table) = self.kind()? else {
            return Err(Error("expected a table".to_owned()));
        };
        let mut strangers: Vec<(&String, &Value)> = table
            .iter()
            .filter(|(key, _)| !fields.contains(&key.as_str()))
            .collect();
        strangers.sort_by_key(|(key, _)| *key);
        for (key, value) in strangers {
            self.unknown.borrow_mut().push(ConfigProblem {
                path: join(&self.path, key),
                message: unknown("key", key, fields),
                origin: origin(value),
            });
        }
        let entries: Vec<(&str, Option<&Value>)> = fields
            .iter()
            .map(|field| (*field, table.get(*field)))
            .collect();
        visitor.visit_map(Entries {
            entries: entries.into_iter(),
            pending: None,
            node: &self,
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == CHECKED {
            visitor.visit_map(CheckedAccess {
                origin: self.value.and_then(origin).unwrap_or_default(),
                step: 0,
                node: Some(self),
            })
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.kind()? {
            ValueKind::String(text) => visitor.visit_enum(text.as_str().into_deserializer()),
            _ => Err(Error(format!("expected {}", one_of(variants)))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

/// The entries of a table: every key of a map, or every field of a struct (absent ones
/// included).
struct Entries<'n, 'a, I> {
    entries: I,
    pending: Option<(&'a str, Option<&'a Value>)>,
    node: &'n Node<'a>,
}

impl<'de, 'a, I> de::MapAccess<'de> for Entries<'_, 'a, I>
where
    I: Iterator<Item = (&'a str, Option<&'a Value>)>,
{
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| Error("a value without its key".to_owned()))?;
        seed.deserialize(self.node.child(key, value))
    }
}

/// The items of an array, each at `path[index]`.
struct Items<'n, 'a, I> {
    items: I,
    node: &'n Node<'a>,
}

impl<'de, 'a, I> de::SeqAccess<'de> for Items<'_, 'a, I>
where
    I: Iterator<Item = (usize, &'a Value)>,
{
    type Error = Error;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Node {
            value: Some(value),
            path: format!("{}[{index}]", self.node.path),
            unknown: self.node.unknown,
        })
        .map(Some)
    }
}

/// What a [`Checked`](super::read::Checked) is told: `path`, `origin` (empty for the
/// defaults), and `value` when a layer sets one.
struct CheckedAccess<'a> {
    origin: String,
    step: u8,
    node: Option<Node<'a>>,
}

impl<'de> de::MapAccess<'de> for CheckedAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let key = match self.step {
            0 => "path",
            1 => "origin",
            2 if self.node.as_ref().is_some_and(|node| node.value.is_some()) => "value",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        self.step += 1;
        let node = self
            .node
            .as_ref()
            .ok_or_else(|| Error("read twice".to_owned()))?;
        match self.step {
            1 => seed.deserialize(node.path.as_str().into_deserializer()),
            2 => seed.deserialize(self.origin.as_str().into_deserializer()),
            _ => seed.deserialize(
                self.node
                    .take()
                    .ok_or_else(|| Error("read twice".to_owned()))?,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use config::{Config, File, FileFormat};
    use serde::Deserialize;

    use super::*;
    use crate::config::read::{Checked, Problems};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        name: Checked<String>,
        count: Checked<i64>,
        on: Checked<bool>,
        words: Checked<Vec<String>>,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        depth: Checked<i64>,
    }

    fn tree(toml: &str) -> Value {
        let config = Config::builder()
            .add_source(File::from_str(toml, FileFormat::Toml))
            .build()
            .expect("toml");
        config.cache
    }

    #[test]
    fn every_unknown_key_is_reported_and_the_known_ones_are_still_read() {
        let value = tree("name = \"a\"\nnmae = \"b\"\ncolour = 1\n[nested]\ndepht = 2\n");
        let mut problems = Vec::new();
        let section: Section = read("s", Some(&value), &mut problems).expect("read");
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "s.colour: unknown key (known keys here: name, count, on, words, nested)",
                "s.nmae: unknown key (did you mean 'name'?)",
                "s.nested.depht: unknown key (did you mean 'depth'?)",
            ]
        );
        assert_eq!(section.name.value().map(String::as_str), Some("a"));
        assert!(!section.nested.expect("nested").depth.is_set());
    }

    #[test]
    fn a_bad_value_is_kept_with_its_path_and_the_next_one_is_still_read() {
        let value = tree("name = 5\ncount = \"many\"\non = \"yes\"\nwords = \"a, b,,c\"\n");
        let mut problems = Vec::new();
        let section: Section = read("s", Some(&value), &mut problems).expect("read");
        assert!(problems.is_empty(), "{problems:?}");
        let mut checked = Problems::default();
        assert_eq!(checked.required(&section.name), None);
        assert_eq!(checked.required(&section.count), None);
        assert_eq!(checked.required(&section.on), None);
        assert_eq!(
            checked.required(&section.words),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        let problems = checked.finish(None::<()>).expect_err("problems");
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "s.name: expected a string",
                "s.count: expected a whole number",
                "s.on: expected true or false",
            ]
        );
    }

    #[test]
    fn an_absent_field_is_unset_and_missing_only_where_it_is_required() {
        let value = tree("on = \"true\"\ncount = \"7\"\n");
        let mut problems = Vec::new();
        let section: Section = read("s", Some(&value), &mut problems).expect("read");
        assert!(section.nested.is_none());
        assert!(!section.name.is_set());
        let mut checked = Problems::default();
        assert_eq!(checked.optional(&section.words), None);
        assert_eq!(checked.required(&section.on), Some(true));
        assert_eq!(checked.required(&section.count), Some(7));
        assert_eq!(checked.required(&section.name), None);
        let problems = checked.finish(None::<()>).expect_err("missing");
        assert_eq!(problems[0].to_string(), "s.name: missing");
    }

    #[test]
    fn a_section_that_is_not_a_table_is_one_problem() {
        let value = tree("s = 5\n");
        let ValueKind::Table(root) = &value.kind else {
            panic!("a table")
        };
        let mut problems = Vec::new();
        assert!(read::<Section>("s", root.get("s"), &mut problems).is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].to_string(), "s: expected a table");
    }
}
