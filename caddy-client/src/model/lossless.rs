//! The machinery that makes every model struct lossless.
//!
//! Each struct is declared with [`lossless_struct!`], which adds a public
//! `extra` map and implements `Serialize` and `Deserialize` by hand.
//!
//! Deserialization moves each JSON value into its field through [`FromJson`],
//! which either converts the value exactly (writing the field back gives the
//! same JSON) or hands it back unchanged. A value that does not convert (a
//! value of an unexpected JSON type), and one whose field would be left out
//! when writing (an explicit `null` read into an `Option`, `[]` read into a
//! `Vec` that is skipped when empty) are kept verbatim in `extra` under their
//! key, as are all keys the struct does not model. So every struct writes back
//! exactly what it read, and nested values are moved, never copied.
//!
//! Serialization writes the `extra` entries first, then the typed fields that
//! are set (`Some`, non-empty); a typed field that is set wins over an `extra`
//! entry of the same name.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// Declares a model struct: the public struct (with `Clone`, `Debug`,
/// `Default`, `PartialEq` and an `extra` map for everything it does not
/// model) plus lossless `Serialize`/`Deserialize` impls.
///
/// A field is written under its own name, or under the key given after `=>`
/// (e.g. `pub matchers: Vec<MatcherSet> => "match",`). A field is left out of
/// the JSON when it is `None` or empty.
macro_rules! lossless_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $fdoc:expr])*
                pub $field:ident : $fty:ty $(=> $key:literal)?,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $(
                $(#[doc = $fdoc])*
                pub $field: $fty,
            )*
            /// Every field this type does not model (including `@id` where it is
            /// not modelled, and fields added by newer Caddy versions), and every
            /// modelled field whose JSON value could not be kept in its typed
            /// field (e.g. an explicit `null`), verbatim. Written back unchanged;
            /// a typed field that is set takes precedence over an entry of the
            /// same name here.
            pub extra: ::serde_json::Map<::std::string::String, ::serde_json::Value>,
        }

        impl $crate::model::lossless::FromJson for $name {
            fn from_json(value: ::serde_json::Value) -> ::std::result::Result<Self, ::serde_json::Value> {
                let ::serde_json::Value::Object(mut map) = value else {
                    return Err(value);
                };
                let mut out = Self::default();
                let mut kept = ::serde_json::Map::new();
                $(
                    let key: &str = $crate::model::lossless::lossless_struct!(@key $field $($key)?);
                    if let Some(raw) = map.remove(key) {
                        if let Some(raw) = $crate::model::lossless::convert(raw, &mut out.$field) {
                            kept.insert(key.to_owned(), raw);
                        }
                    }
                )*
                map.extend(kept);
                out.extra = map;
                Ok(out)
            }
        }

        impl $name {
            /// Serializes the struct, optionally with a leading tag entry (the
            /// `"handler"` of a handler), which wins over `extra`.
            pub(crate) fn serialize_tagged<S>(
                &self,
                tag: ::std::option::Option<(&str, &str)>,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error>
            where
                S: ::serde::Serializer,
            {
                use $crate::model::lossless::Omit as _;
                use ::serde::ser::SerializeMap as _;
                let typed = |k: &str| -> bool {
                    $(
                        if k == $crate::model::lossless::lossless_struct!(@key $field $($key)?) {
                            return !self.$field.omit();
                        }
                    )*
                    false
                };
                let tag_key = tag.map(|(k, _)| k);
                let kept = || {
                    self.extra
                        .iter()
                        .filter(|(k, _)| !typed(k.as_str()) && Some(k.as_str()) != tag_key)
                };
                let len = kept().count()
                    + usize::from(tag.is_some())
                    $( + usize::from(!self.$field.omit()) )*;
                let mut map = serializer.serialize_map(Some(len))?;
                if let Some((k, v)) = tag {
                    map.serialize_entry(k, v)?;
                }
                for (k, v) in kept() {
                    map.serialize_entry(k, v)?;
                }
                $(
                    if !self.$field.omit() {
                        map.serialize_entry(
                            $crate::model::lossless::lossless_struct!(@key $field $($key)?),
                            &self.$field,
                        )?;
                    }
                )*
                map.end()
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error>
            where
                S: ::serde::Serializer,
            {
                self.serialize_tagged(None, serializer)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::std::result::Result<Self, D::Error>
            where
                D: ::serde::Deserializer<'de>,
            {
                $crate::model::lossless::deserialize_object(deserializer, stringify!($name))
            }
        }
    };
    (@key $field:ident $key:literal) => { $key };
    (@key $field:ident) => { stringify!($field) };
}
pub(crate) use lossless_struct;

/// Exact conversion of a JSON value into a model field.
pub(crate) trait FromJson: Sized {
    /// Converts `value` so that serializing the result gives `value` back, or
    /// returns `value` unchanged if that is not possible.
    fn from_json(value: Value) -> Result<Self, Value>;
}

/// Whether a field is left out when serializing its struct.
pub(crate) trait Omit {
    /// `true` for `None` and empty collections and strings.
    fn omit(&self) -> bool;
}

impl<T> Omit for Option<T> {
    fn omit(&self) -> bool {
        self.is_none()
    }
}

impl<T> Omit for Vec<T> {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Omit for BTreeMap<K, V> {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl Omit for String {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

/// Converts `raw` into `field`. Returns the raw value if it has to be kept in
/// `extra` instead: it did not convert, or the field would then be omitted.
pub(crate) fn convert<T: FromJson + Omit>(raw: Value, field: &mut T) -> Option<Value> {
    // Only these values can turn into an omitted field; they are cheap to copy.
    let trivial = match &raw {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    let copy = trivial.then(|| raw.clone());
    match T::from_json(raw) {
        Ok(value) if !value.omit() => {
            *field = value;
            None
        }
        Ok(_) => Some(copy.unwrap_or_default()),
        Err(raw) => Some(raw),
    }
}

/// `Deserialize` for a [`FromJson`] type that needs a JSON object.
pub(crate) fn deserialize_object<'de, T, D>(deserializer: D, what: &str) -> Result<T, D::Error>
where
    T: FromJson,
    D: serde::Deserializer<'de>,
{
    let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
    T::from_json(value).map_err(|v| {
        <D::Error as serde::de::Error>::custom(format_args!(
            "expected a JSON object for {what}, got {}",
            json_type(&v)
        ))
    })
}

/// The JSON type of a value, for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl FromJson for Value {
    fn from_json(value: Value) -> Result<Self, Value> {
        Ok(value)
    }
}

impl FromJson for Map<String, Value> {
    fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(map),
            other => Err(other),
        }
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::Null => Ok(None),
            other => T::from_json(other).map(Some),
        }
    }
}

impl<T: FromJson + Serialize> FromJson for Vec<T> {
    fn from_json(value: Value) -> Result<Self, Value> {
        let Value::Array(items) = value else {
            return Err(value);
        };
        let mut out = Vec::with_capacity(items.len());
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            match T::from_json(item) {
                Ok(converted) => out.push(converted),
                Err(item) => {
                    // Give the array back as it was: converted items write back
                    // exactly, the rest are untouched.
                    let mut restored: Vec<Value> = out.iter().map(to_value_exact).collect();
                    restored.push(item);
                    restored.extend(items);
                    return Err(Value::Array(restored));
                }
            }
        }
        Ok(out)
    }
}

impl<T: FromJson + Serialize> FromJson for BTreeMap<String, T> {
    fn from_json(value: Value) -> Result<Self, Value> {
        let Value::Object(entries) = value else {
            return Err(value);
        };
        let mut out = BTreeMap::new();
        let mut entries = entries.into_iter();
        while let Some((key, item)) = entries.next() {
            match T::from_json(item) {
                Ok(converted) => {
                    out.insert(key, converted);
                }
                Err(item) => {
                    let mut restored: Map<String, Value> = out
                        .iter()
                        .map(|(k, v)| (k.clone(), to_value_exact(v)))
                        .collect();
                    restored.insert(key, item);
                    restored.extend(entries);
                    return Err(Value::Object(restored));
                }
            }
        }
        Ok(out)
    }
}

/// Serializes a value that came from [`FromJson`] (which cannot fail for the
/// model's types, whose map keys are strings).
fn to_value_exact<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// [`FromJson`] for small leaf types through serde, checked by writing the
/// value back.
macro_rules! leaf_from_json {
    ($($ty:ty),* $(,)?) => {
        $(
            impl $crate::model::lossless::FromJson for $ty {
                fn from_json(
                    value: ::serde_json::Value,
                ) -> ::std::result::Result<Self, ::serde_json::Value> {
                    match <$ty as ::serde::Deserialize>::deserialize(&value) {
                        Ok(converted)
                            if ::serde_json::to_value(&converted).is_ok_and(|v| v == value) =>
                        {
                            Ok(converted)
                        }
                        _ => Err(value),
                    }
                }
            }
        )*
    };
}
pub(crate) use leaf_from_json;

leaf_from_json!(bool, u16, u64, i64, String);
