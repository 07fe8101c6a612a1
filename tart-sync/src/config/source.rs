//! File and environment layered into one [serde `Deserializer`](serde::Deserializer), and where
//! each value came from.
//!
//! The file is parsed once with toml (which keeps the position of every
//! key); each section's keys can then be overridden by
//! `TART_SYNC_<SECTION>_<KEY>`. The settings structs are deserialized from
//! that layer in one pass, so serde checks types and unknown keys, and every
//! error names the setting and its origin: the file's line, or the variable.
//!
//! Why not figment: its errors name the file but not the line, it reads only
//! the process environment (the tests pass a map), and its messages quote
//! values of the wrong type, which may be the API key. This layer is small
//! and keeps all three: it learns the keys of a section from the struct
//! serde deserializes (no second list of keys), types environment text by
//! what the setting expects, and has its own error type that never quotes a
//! value of the wrong type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Expected, IntoDeserializer, Unexpected, Visitor};
use serde::{Deserialize, Deserializer as _};
use toml::de::{DeTable, DeValue};

use super::{env_var_name, ConfigError};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A line (1-based) of the configuration file.
    File(usize),
    /// An environment variable.
    Env(String),
}

/// The configuration file (if any) and the environment, ready to be
/// deserialized into settings.
pub(crate) struct Sources<'a> {
    /// The file's values.
    file: toml::Table,
    /// The line of each `section` and `section.key` written in the file.
    lines: BTreeMap<String, usize>,
    /// The file's path, for relative paths.
    pub(crate) path: Option<&'a Path>,
    /// `config file [path]`, for messages.
    file_name: String,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Keys of a section that the environment replaces together: setting
    /// any of them in the environment drops all of them from the file.
    together: &'a [(&'a str, &'a [&'a str])],
}

impl<'a> Sources<'a> {
    /// Parses the file's text (a syntax error names the line and the setting
    /// on it, never its value).
    pub(crate) fn new(
        text: Option<&str>,
        path: Option<&'a Path>,
        env: &'a dyn Fn(&str) -> Option<String>,
        together: &'a [(&'a str, &'a [&'a str])],
    ) -> Result<Self, ConfigError> {
        let file_name = match path {
            Some(p) => format!("config file {}", p.display()),
            None => "config file".to_owned(),
        };
        let mut sources = Sources {
            file: toml::Table::new(),
            lines: BTreeMap::new(),
            path,
            file_name,
            env,
            together,
        };
        let Some(text) = text else {
            return Ok(sources);
        };
        let (doc, errors) = DeTable::parse_recoverable(text);
        for (section, value) in doc.get_ref().iter() {
            let name = section.get_ref();
            sources
                .lines
                .insert(name.to_string(), line_col(text, section.span().start).0);
            if let DeValue::Table(table) = value.get_ref() {
                for (key, _) in table.iter() {
                    let line = line_col(text, key.span().start).0;
                    sources
                        .lines
                        .insert(format!("{name}.{}", key.get_ref()), line);
                }
            }
        }
        if let Some(e) = errors.first() {
            return Err(sources.syntax(text, e));
        }
        sources.file = toml::Table::deserialize(doc.into_deserializer())
            .map_err(|e| sources.syntax(text, &e))?;
        Ok(sources)
    }

    /// Deserializes the settings: the file's values, each key replaced by its
    /// environment variable when that is set and not blank.
    pub(crate) fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let root = Node::Layer(self, None, Some(toml::Value::Table(self.file.clone())));
        serde_path_to_error::deserialize(root).map_err(|e| {
            // `headscale.tags[1]` is about `headscale.tags`; `.` is the root.
            let path = e.path().to_string();
            let setting = match path.split('[').next() {
                Some(".") | Some("") | None => "config file",
                Some(setting) => setting,
            };
            self.invalid(setting, e.into_inner())
        })
    }

    /// Where `setting` (`section.key` or `section`) was set, if it was.
    pub(crate) fn origin(&self, setting: &str) -> Option<Origin> {
        if let Some((section, key)) = setting.split_once('.') {
            if self.env_value(section, key).is_some() {
                return Some(Origin::Env(env_var_name(section, key)));
            }
        }
        self.lines.get(setting).map(|&line| Origin::File(line))
    }

    /// An error about `setting`, ending with where it was set.
    pub(crate) fn invalid(&self, setting: &str, message: impl fmt::Display) -> ConfigError {
        let message = match self.origin(setting) {
            Some(Origin::Env(var)) => format!("{message} (from {var})"),
            Some(Origin::File(line)) => format!("{message} ({} line {line})", self.file_name),
            None => message.to_string(),
        };
        ConfigError::Invalid {
            setting: setting.to_owned(),
            message,
        }
    }

    /// The environment's value of `section.key`: `None` when unset or blank.
    fn env_value(&self, section: &str, key: &str) -> Option<String> {
        let value = (self.env)(&env_var_name(section, key))?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// A toml syntax error, located by its line and the setting defined there.
    fn syntax(&self, text: &str, e: &toml::de::Error) -> ConfigError {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        let setting = self
            .lines
            .iter()
            .filter(|&(_, &l)| l == line)
            .map(|(setting, _)| setting)
            .max_by_key(|setting| setting.len())
            .map_or_else(|| "config file".to_owned(), Clone::clone);
        let location = if line > 0 {
            format!("{} line {line}, column {column}", self.file_name)
        } else {
            self.file_name.clone()
        };
        ConfigError::Syntax {
            setting,
            location,
            // Not toml's Display: it quotes the line, which may hold the key.
            message: e.message().trim().replace('\n', "; "),
        }
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let line = before.matches('\n').count().saturating_add(1);
    let column = before
        .get(line_start..)
        .map_or(0, |l| l.chars().count())
        .saturating_add(1);
    (line, column)
}

/// A value being deserialized.
enum Node<'s> {
    /// The file (section `None`) or one section of it, with the
    /// environment over it.
    Layer(&'s Sources<'s>, Option<&'static str>, Option<toml::Value>),
    /// A value written in the file.
    File(toml::Value),
    /// An environment variable's text (trimmed, not blank).
    Env(String),
}

impl Node<'_> {
    /// The text of a string value, to be read as another type.
    fn text(self) -> Result<String, Self> {
        match self {
            Node::Env(s) | Node::File(toml::Value::String(s)) => Ok(s.trim().to_owned()),
            other => Err(other),
        }
    }

    /// An integer, also from a string of digits.
    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.text() {
            Ok(text) => match text.parse::<i64>() {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => Err(de::Error::invalid_value(Unexpected::Str(&text), &visitor)),
            },
            Err(other) => other.deserialize_any(visitor),
        }
    }
}

/// `deserialize_*` methods that read [`Node::integer`].
macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
            self.integer(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        let value = match self {
            Node::Layer(..) => return self.deserialize_struct("", &[], visitor),
            Node::Env(text) => return visitor.visit_string(text),
            Node::File(value) => value,
        };
        match value {
            toml::Value::String(s) => visitor.visit_string(s.trim().to_owned()),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            toml::Value::Datetime(_) => Err(de::Error::invalid_type(
                Unexpected::Other("a date-time"),
                &visitor,
            )),
            toml::Value::Array(items) => {
                visitor.visit_seq(SeqDeserializer::new(items.into_iter().map(Node::File)))
            }
            toml::Value::Table(table) => visitor.visit_map(MapDeserializer::new(
                table.into_iter().map(|(k, v)| (k, Node::File(v))),
            )),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        let (sources, section, mut file) = match self {
            Node::Layer(sources, section, None) => (sources, section, toml::Table::new()),
            Node::Layer(sources, section, Some(toml::Value::Table(t))) => (sources, section, t),
            // Not a table: the visitor refuses it, except a list, which
            // serde's derive would take as the fields in order.
            Node::Layer(_, _, Some(toml::Value::Array(_))) | Node::File(toml::Value::Array(_)) => {
                return Err(de::Error::invalid_type(Unexpected::Seq, &visitor))
            }
            Node::Layer(_, _, Some(other)) | Node::File(other) => {
                return Node::File(other).deserialize_any(visitor)
            }
            env => return env.deserialize_any(visitor),
        };
        if let Some(section) = section {
            for &(s, keys) in sources.together {
                if s == section && keys.iter().any(|k| sources.env_value(s, k).is_some()) {
                    keys.iter().for_each(|k| drop(file.remove(*k)));
                }
            }
        }
        let mut entries = Vec::with_capacity(fields.len());
        for &key in fields {
            let node = match section {
                // The file: one layer per section the settings have.
                None => Some(Node::Layer(sources, Some(key), file.remove(key))),
                // A section: the environment replaces the file key by key.
                Some(section) => sources.env_value(section, key).map(|text| {
                    file.remove(key);
                    Node::Env(text)
                }),
            };
            entries.extend(node.map(|node| (key.to_owned(), node)));
        }
        // What is left of the file, unknown keys included (serde rejects them).
        entries.extend(file.into_iter().map(|(k, v)| (k, Node::File(v))));
        visitor.visit_map(MapDeserializer::new(entries.into_iter()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_some(self)
    }

    /// A list; a string is a list of one in the file and a comma-separated
    /// list in the environment (empty items dropped).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self {
            Node::Env(text) => {
                let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
                visitor.visit_seq(SeqDeserializer::new(items.map(|s| Node::Env(s.to_owned()))))
            }
            Node::File(toml::Value::String(s)) => visitor.visit_seq(SeqDeserializer::new(
                std::iter::once(Node::File(toml::Value::String(s))),
            )),
            other => other.deserialize_any(visitor),
        }
    }

    /// A unit variant, from a string in any case.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self.text() {
            Ok(text) => visitor.visit_enum(text.to_ascii_lowercase().into_deserializer()),
            Err(other) => other.deserialize_any(visitor),
        }
    }

    /// A boolean, also from `true` or `false` (any case) in the environment.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self {
            Node::Env(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => Err(de::Error::invalid_value(Unexpected::Str(&text), &visitor)),
            },
            other => other.deserialize_any(visitor),
        }
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct map identifier ignored_any
    }
}

impl<'s> IntoDeserializer<'_, FieldError> for Node<'s> {
    type Deserializer = Node<'s>;

    fn into_deserializer(self) -> Node<'s> {
        self
    }
}

/// A deserialization error whose messages never quote a value of the wrong
/// type: a string where a table or number belongs may be the API key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FieldError(String);

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FieldError(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        FieldError(format!(
            "expected {}, found {}",
            in_words(exp),
            kind(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let value = match unexp {
            Unexpected::Str(s) => format!("{s:?}"),
            Unexpected::Signed(i) => i.to_string(),
            Unexpected::Unsigned(u) => u.to_string(),
            other => kind(&other),
        };
        FieldError(format!("{value} is not {}", in_words(exp)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let expected = expected.join("\" or \"");
        FieldError(format!("{variant:?} is not valid (use \"{expected}\")"))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        let expected = expected.join(", ");
        FieldError(format!(
            "unknown field; check the spelling (known here: {expected})"
        ))
    }
}

/// serde's name for what a type expects, where a user would not know it.
fn in_words(exp: &dyn Expected) -> String {
    match exp.to_string().as_str() {
        "u16" => "an integer from 0 to 65535".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a duration" => r#"a duration with a unit, like "5s", "1m30s" or "100ms""#.to_owned(),
        other => other.to_owned(),
    }
}

/// The kind of an unexpected value, without the value.
fn kind(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(_) => "a boolean".to_owned(),
        Unexpected::Signed(_) | Unexpected::Unsigned(_) => "an integer".to_owned(),
        Unexpected::Float(_) => "a float".to_owned(),
        Unexpected::Char(_) | Unexpected::Str(_) => "a string".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a table".to_owned(),
        Unexpected::Other(what) => (*what).to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        a: Section,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields, expecting = "a table")]
    struct Section {
        port: Option<u16>,
        list: Vec<String>,
        name: Option<String>,
        secret: Option<String>,
    }

    fn parse(text: &str, env: &[(&'static str, &'static str)]) -> Result<Section, ConfigError> {
        let env: BTreeMap<_, _> = env.iter().copied().collect();
        let lookup = move |k: &str| env.get(k).map(|v| (*v).to_owned());
        let together: &[(&str, &[&str])] = &[("a", &["name", "secret"])];
        let doc: Doc = Sources::new(Some(text), None, &lookup, together)?.deserialize()?;
        Ok(doc.a)
    }

    #[test]
    fn environment_is_typed_by_the_setting() {
        let env = [
            ("TART_SYNC_A_PORT", " 8080 "),
            ("TART_SYNC_A_LIST", "x, y,,"),
        ];
        let a = parse("[a]\nport = 1\nname = \" n \"\n", &env).unwrap();
        assert_eq!((a.port, a.list), (Some(8080), vec!["x".into(), "y".into()]));
        assert_eq!(a.name.as_deref(), Some("n"), "strings are trimmed");

        let a = parse("[a]\nport = \"81\"\nlist = \"x, y\"\n", &[]).unwrap();
        assert_eq!((a.port, a.list), (Some(81), vec!["x, y".into()]));

        let a = parse("[a]\nname = \"n\"\n", &[("TART_SYNC_A_SECRET", "s")]).unwrap();
        assert_eq!((a.name, a.secret.as_deref()), (None, Some("s")), "together");
    }
}
