//! The machinery that makes every model struct lossless.
//!
//! Each struct is declared with [`lossless_struct!`], which adds a public
//! `extra` map and implements `Serialize`/`Deserialize` through a private
//! shadow type (a serde "remote" derive). Deserialization goes through
//! [`from_map`], which checks that the typed value writes back exactly what it
//! read; every key that does not (an explicit `null` read into an `Option`, an
//! `[]` read into a `Vec` that is skipped when empty, a value of an unexpected
//! JSON type, ...) is moved verbatim into `extra` instead, so the struct always
//! round-trips. Serialization writes `extra` first and the typed fields over
//! it, so a typed field that is set wins over a stale entry of the same name.

use serde::ser::{Error as _, SerializeMap as _};
use serde::Serializer;
use serde_json::{Map, Value};

/// Declares a model struct: the public struct (with `Clone`, `Debug`,
/// `Default`, `PartialEq` and an `extra` map for everything it does not model)
/// plus lossless `Serialize`/`Deserialize` impls.
///
/// Field attributes: doc comments first, then `#[serde(...)]` attributes,
/// which only go to the private shadow type.
macro_rules! lossless_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $fdoc:expr])*
                $(#[serde($($fserde:tt)*)])*
                pub $field:ident : $fty:ty,
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
            /// not modelled, and fields added by newer Caddy versions), kept
            /// verbatim and written back unchanged. A modelled field that is set
            /// takes precedence over an entry of the same name here.
            pub extra: ::serde_json::Map<::std::string::String, ::serde_json::Value>,
        }

        const _: () = {
            type Target = $name;

            #[derive(::serde::Serialize, ::serde::Deserialize)]
            #[serde(remote = "Target")]
            struct Shadow {
                $(
                    $(#[serde($($fserde)*)])*
                    $field: $fty,
                )*
                #[serde(flatten, skip_serializing)]
                extra: ::serde_json::Map<::std::string::String, ::serde_json::Value>,
            }

            impl<'de> ::serde::Deserialize<'de> for $name {
                fn deserialize<D>(deserializer: D) -> ::std::result::Result<Self, D::Error>
                where
                    D: ::serde::Deserializer<'de>,
                {
                    let map = <::serde_json::Map<::std::string::String, ::serde_json::Value>
                        as ::serde::Deserialize>::deserialize(deserializer)?;
                    $crate::model::lossless::from_map(
                        map,
                        |v| Shadow::deserialize(v),
                        |t| Shadow::serialize(t, ::serde_json::value::Serializer),
                        |t| &mut t.extra,
                    )
                    .map_err(<D::Error as ::serde::de::Error>::custom)
                }
            }

            impl ::serde::Serialize for $name {
                fn serialize<S>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error>
                where
                    S: ::serde::Serializer,
                {
                    let typed = Shadow::serialize(self, ::serde_json::value::Serializer)
                        .map_err(<S::Error as ::serde::ser::Error>::custom)?;
                    $crate::model::lossless::serialize_merged(typed, &self.extra, serializer)
                }
            }
        };
    };
}
pub(crate) use lossless_struct;

/// Deserializes a struct from `map` so that it writes back exactly `map`.
///
/// `de` is the plain (derived) deserializer, `ser` the plain serializer that
/// writes only the typed fields, `extra` gives access to the struct's `extra`.
pub(crate) fn from_map<T: Default>(
    map: Map<String, Value>,
    de: impl Fn(Value) -> Result<T, serde_json::Error>,
    ser: impl Fn(&T) -> Result<Value, serde_json::Error>,
    extra: impl Fn(&mut T) -> &mut Map<String, Value>,
) -> Result<T, serde_json::Error> {
    let is_exact =
        |t: &mut T, input: &Map<String, Value>| -> Result<Vec<String>, serde_json::Error> {
            let typed = match ser(t)? {
                Value::Object(typed) => typed,
                other => return Err(json_err(format!("expected an object, got {other}"))),
            };
            let extra = extra(t);
            let mut bad: Vec<String> = input
                .iter()
                .filter(|(k, v)| match typed.get(k.as_str()) {
                    Some(t) => t != *v,
                    None => extra.get(k.as_str()) != Some(*v),
                })
                .map(|(k, _)| k.clone())
                .collect();
            // A typed field written although the input did not have it cannot be
            // fixed by moving keys; report it so the caller falls back.
            bad.extend(
                typed
                    .keys()
                    .filter(|k| !input.contains_key(k.as_str()))
                    .cloned(),
            );
            Ok(bad)
        };

    // Fast path: the typed value round-trips as a whole.
    let bad = match de(Value::Object(map.clone())) {
        Ok(mut t) => {
            let bad = is_exact(&mut t, &map)?;
            if bad.is_empty() {
                return Ok(t);
            }
            bad
        }
        // Find the keys that do not deserialize (or round-trip) on their own.
        Err(_) => map
            .iter()
            .filter(|(k, v)| {
                let single: Map<String, Value> =
                    std::iter::once(((*k).clone(), (*v).clone())).collect();
                match de(Value::Object(single.clone())) {
                    Ok(mut t) => is_exact(&mut t, &single).map_or(true, |b| !b.is_empty()),
                    Err(_) => true,
                }
            })
            .map(|(k, _)| k.clone())
            .collect(),
    };

    // Slow path: parse without the offending keys and keep those verbatim.
    let mut rest = map.clone();
    let mut moved = Map::new();
    for k in bad {
        if let Some(v) = rest.remove(&k) {
            moved.insert(k, v);
        }
    }
    if let Ok(mut t) = de(Value::Object(rest)) {
        extra(&mut t).extend(moved);
        if is_exact(&mut t, &map)?.is_empty() {
            return Ok(t);
        }
    }

    // Last resort: nothing typed, everything kept verbatim.
    let mut t = T::default();
    *extra(&mut t) = map;
    Ok(t)
}

/// Serializes the typed fields (`typed`, an object) over `extra`.
pub(crate) fn serialize_merged<S: Serializer>(
    typed: Value,
    extra: &Map<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let Value::Object(typed) = typed else {
        return Err(S::Error::custom(
            "model struct did not serialize to an object",
        ));
    };
    let len = typed.len()
        + extra
            .keys()
            .filter(|k| !typed.contains_key(k.as_str()))
            .count();
    let mut map = serializer.serialize_map(Some(len))?;
    for (k, v) in extra {
        if !typed.contains_key(k.as_str()) {
            map.serialize_entry(k, v)?;
        }
    }
    for (k, v) in &typed {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// A custom `serde_json::Error`.
fn json_err(msg: impl std::fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}
