//! HTTP handlers: the [`Handler`] enum and the typed handlers (`reverse_proxy` and its parts are in `reverse_proxy.rs`).

use std::collections::BTreeMap;

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::http::{find_in, find_in_mut, HttpErrors, Route};
use super::lossless::{deserialize_object, lossless_struct, FromJson};
use super::reverse_proxy::ReverseProxy;
use super::values::StatusCode;
use super::{raw_id, HeaderMap};

/// One HTTP handler (an element of a route's `handle`), tagged by its
/// `"handler"` field.
///
/// The handlers below are typed; any other handler (`authentication`,
/// `request_body`, `templates`, `error`, plugins, ...) is kept whole in
/// [`Handler::Other`], including its `"handler"` name. New variants may be
/// added in later versions, taking handlers out of `Other`.
// Variants are kept unboxed so that they can be matched and built directly;
// a config holds few enough handlers for their size not to matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Handler {
    /// `reverse_proxy`.
    ReverseProxy(ReverseProxy),
    /// `subroute`: nested routes.
    Subroute(Subroute),
    /// `static_response` (also what `respond`, `redir` and `abort` adapt to).
    StaticResponse(StaticResponse),
    /// `rewrite` (also what `uri` and `handle_path` adapt to).
    Rewrite(Rewrite),
    /// `headers` (what the `header` directive adapts to).
    Headers(Headers),
    /// `map`.
    Map(MapHandler),
    /// `vars`: every field other than `"handler"` is a variable (for example
    /// `root`, set by the `root` directive).
    Vars(Map<String, Value>),
    /// `file_server`.
    FileServer(FileServer),
    /// `encode`.
    Encode(Encode),
    /// Any other handler, as the whole JSON object (with its `"handler"`).
    Other(Map<String, Value>),
}

impl Default for Handler {
    fn default() -> Self {
        Handler::StaticResponse(StaticResponse::default())
    }
}

impl Handler {
    /// The handler's name as written in `"handler"` (for [`Handler::Other`]
    /// the stored name, or `""` if it has none).
    pub fn name(&self) -> &str {
        match self {
            Handler::ReverseProxy(_) => "reverse_proxy",
            Handler::Subroute(_) => "subroute",
            Handler::StaticResponse(_) => "static_response",
            Handler::Rewrite(_) => "rewrite",
            Handler::Headers(_) => "headers",
            Handler::Map(_) => "map",
            Handler::Vars(_) => "vars",
            Handler::FileServer(_) => "file_server",
            Handler::Encode(_) => "encode",
            Handler::Other(map) => map.get("handler").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The handler's `@id` as a string (numbers in decimal form).
    pub fn id(&self) -> Option<String> {
        raw_id(self.extra())
    }

    /// The fields of this handler that its type does not model (for
    /// [`Handler::Vars`] the variables, for [`Handler::Other`] the whole
    /// object).
    pub fn extra(&self) -> &Map<String, Value> {
        match self {
            Handler::ReverseProxy(h) => &h.extra,
            Handler::Subroute(h) => &h.extra,
            Handler::StaticResponse(h) => &h.extra,
            Handler::Rewrite(h) => &h.extra,
            Handler::Headers(h) => &h.extra,
            Handler::Map(h) => &h.extra,
            Handler::FileServer(h) => &h.extra,
            Handler::Encode(h) => &h.extra,
            Handler::Vars(map) | Handler::Other(map) => map,
        }
    }

    /// Mutable access to [`Handler::extra`] (e.g. to set an `@id`).
    pub fn extra_mut(&mut self) -> &mut Map<String, Value> {
        match self {
            Handler::ReverseProxy(h) => &mut h.extra,
            Handler::Subroute(h) => &mut h.extra,
            Handler::StaticResponse(h) => &mut h.extra,
            Handler::Rewrite(h) => &mut h.extra,
            Handler::Headers(h) => &mut h.extra,
            Handler::Map(h) => &mut h.extra,
            Handler::FileServer(h) => &mut h.extra,
            Handler::Encode(h) => &mut h.extra,
            Handler::Vars(map) | Handler::Other(map) => map,
        }
    }

    /// The handler as a JSON object (with its `"handler"` field).
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Handlers always serialize to objects with string keys.
            _ => Map::new(),
        }
    }

    /// A handler from its JSON object: typed if its `"handler"` is one of the
    /// modelled names, [`Handler::Other`] otherwise. Never fails, and
    /// [`Handler::to_object`] gives the object back.
    pub fn from_object(map: Map<String, Value>) -> Handler {
        let Some(name) = map.get("handler").and_then(Value::as_str) else {
            return Handler::Other(map);
        };
        let known = [
            "reverse_proxy",
            "subroute",
            "static_response",
            "rewrite",
            "headers",
            "map",
            "vars",
            "file_server",
            "encode",
        ];
        if !known.contains(&name) {
            return Handler::Other(map);
        }
        let name = name.to_owned();
        let mut rest = map;
        let tag = rest.remove("handler");
        if name == "vars" {
            return Handler::Vars(rest);
        }
        let value = Value::Object(rest);
        let typed = match name.as_str() {
            "reverse_proxy" => ReverseProxy::from_json(value).map(Handler::ReverseProxy),
            "subroute" => Subroute::from_json(value).map(Handler::Subroute),
            "static_response" => StaticResponse::from_json(value).map(Handler::StaticResponse),
            "rewrite" => Rewrite::from_json(value).map(Handler::Rewrite),
            "headers" => Headers::from_json(value).map(Handler::Headers),
            "map" => MapHandler::from_json(value).map(Handler::Map),
            "file_server" => FileServer::from_json(value).map(Handler::FileServer),
            _ => Encode::from_json(value).map(Handler::Encode),
        };
        // The typed handlers accept any object, so this only keeps the
        // original if that ever changes.
        typed.unwrap_or_else(|value| {
            let mut map = match value {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if let Some(tag) = tag {
                map.insert("handler".to_owned(), tag);
            }
            Handler::Other(map)
        })
    }

    /// The routes directly nested in this handler: `subroute` routes and
    /// error routes, `reverse_proxy` `handle_response` routes.
    pub fn child_routes(&self) -> Vec<&Route> {
        match self {
            Handler::Subroute(s) => s
                .routes
                .iter()
                .chain(s.errors.iter().flat_map(|e| e.routes.iter()))
                .collect(),
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter()
                .flatten()
                .flat_map(|h| h.routes.iter())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first route with this `@id` nested in this handler, depth first.
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        match self {
            Handler::Subroute(s) => {
                find_in(&s.routes, id).or_else(|| find_in(&s.errors.as_ref()?.routes, id))
            }
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter()
                .flatten()
                .find_map(|h| find_in(&h.routes, id)),
            _ => None,
        }
    }

    /// Like [`Handler::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        match self {
            Handler::Subroute(s) => {
                let Subroute { routes, errors, .. } = s;
                find_in_mut(routes, id).or_else(|| find_in_mut(&mut errors.as_mut()?.routes, id))
            }
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter_mut()
                .flatten()
                .find_map(|h| find_in_mut(&mut h.routes, id)),
            _ => None,
        }
    }
}

impl Serialize for Handler {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tag = Some(("handler", self.name()));
        match self {
            Handler::ReverseProxy(h) => h.serialize_tagged(tag, serializer),
            Handler::Subroute(h) => h.serialize_tagged(tag, serializer),
            Handler::StaticResponse(h) => h.serialize_tagged(tag, serializer),
            Handler::Rewrite(h) => h.serialize_tagged(tag, serializer),
            Handler::Headers(h) => h.serialize_tagged(tag, serializer),
            Handler::Map(h) => h.serialize_tagged(tag, serializer),
            Handler::FileServer(h) => h.serialize_tagged(tag, serializer),
            Handler::Encode(h) => h.serialize_tagged(tag, serializer),
            Handler::Vars(vars) => {
                let vars = vars.iter().filter(|(k, _)| k.as_str() != "handler");
                let mut map = serializer.serialize_map(Some(vars.clone().count() + 1))?;
                map.serialize_entry("handler", "vars")?;
                for (k, v) in vars {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Handler::Other(map) => map.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Handler {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_object(deserializer, "Handler")
    }
}

impl FromJson for Handler {
    fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(Handler::from_object(map)),
            other => Err(other),
        }
    }
}

macro_rules! impl_from_handler {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for Handler {
                fn from(h: $ty) -> Self {
                    Handler::$variant(h)
                }
            }
        )*
    };
}

impl_from_handler! {
    ReverseProxy => ReverseProxy,
    Subroute => Subroute,
    StaticResponse => StaticResponse,
    Rewrite => Rewrite,
    Headers => Headers,
    MapHandler => Map,
    FileServer => FileServer,
    Encode => Encode,
}

lossless_struct! {
    /// The `headers` handler, and `headers` of a `reverse_proxy`.
    pub struct Headers {
        /// `request`: changes to request headers.
        pub request: Option<HeaderOps>,
        /// `response`: changes to response headers.
        pub response: Option<HeaderOps>,
    }
}

lossless_struct! {
    /// Header operations (`request` or `response` of [`Headers`]).
    pub struct HeaderOps {
        /// `add`: values to add.
        pub add: Option<HeaderMap>,
        /// `set`: values to set, replacing existing ones.
        pub set: Option<HeaderMap>,
        /// `delete`: header names to remove (with `*` wildcards).
        pub delete: Option<Vec<String>>,
        /// `replace`: substring or regexp replacements, by header name.
        pub replace: Option<BTreeMap<String, Vec<HeaderReplacement>>>,
        /// `deferred` (responses only): apply when the response is written.
        pub deferred: Option<bool>,
        /// `require` (responses only): only apply if the response matches,
        /// kept as raw JSON.
        pub require: Option<Value>,
    }
}

lossless_struct! {
    /// One header value replacement.
    pub struct HeaderReplacement {
        /// `search`: a substring to find.
        pub search: Option<String>,
        /// `search_regexp`: a regular expression to find.
        pub search_regexp: Option<String>,
        /// `replace`: the replacement.
        pub replace: Option<String>,
    }
}

lossless_struct! {
    /// The `subroute` handler: routes evaluated as a group.
    pub struct Subroute {
        /// `routes`: the nested routes, in order.
        pub routes: Vec<Route>,
        /// `errors`: routes for errors raised in `routes`.
        pub errors: Option<HttpErrors>,
    }
}

lossless_struct! {
    /// The `static_response` handler.
    pub struct StaticResponse {
        /// `status_code`: the status (default 200).
        pub status_code: Option<StatusCode>,
        /// `headers`: response headers.
        pub headers: Option<HeaderMap>,
        /// `body`: the response body.
        pub body: Option<String>,
        /// `close`: close the connection after responding.
        pub close: Option<bool>,
        /// `abort`: abort the connection without a response.
        pub abort: Option<bool>,
    }
}

lossless_struct! {
    /// The `rewrite` handler.
    pub struct Rewrite {
        /// `method`: the new method.
        pub method: Option<String>,
        /// `uri`: the new URI (path and/or query).
        pub uri: Option<String>,
        /// `strip_path_prefix`: a path prefix to remove.
        pub strip_path_prefix: Option<String>,
        /// `strip_path_suffix`: a path suffix to remove.
        pub strip_path_suffix: Option<String>,
        /// `uri_substring`: substring replacements in the URI.
        pub uri_substring: Option<Vec<UriSubstring>>,
        /// `path_regexp`: regexp replacements in the path, kept as raw JSON.
        pub path_regexp: Option<Value>,
    }
}

lossless_struct! {
    /// One `uri_substring` replacement of [`Rewrite`].
    pub struct UriSubstring {
        /// `find`: the substring to find.
        pub find: Option<String>,
        /// `replace`: the replacement.
        pub replace: Option<String>,
        /// `limit`: maximum replacements (0 = all).
        pub limit: Option<i64>,
    }
}

lossless_struct! {
    /// The `map` handler: sets placeholders from a lookup table.
    pub struct MapHandler {
        /// `source`: the placeholder to look up.
        pub source: Option<String>,
        /// `destinations`: the placeholders to set.
        pub destinations: Option<Vec<String>>,
        /// `mappings`: the table rows, in order.
        pub mappings: Option<Vec<Mapping>>,
        /// `defaults`: values when nothing matches, one per destination.
        pub defaults: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// One row of a [`MapHandler`].
    pub struct Mapping {
        /// `input`: the exact input to match.
        pub input: Option<String>,
        /// `input_regexp`: a regular expression to match instead.
        pub input_regexp: Option<String>,
        /// `outputs`: one value per destination (any JSON; `null` for "leave
        /// unset").
        pub outputs: Option<Vec<Value>>,
    }
}

lossless_struct! {
    /// The `file_server` handler.
    pub struct FileServer {
        /// `root`: the site root (default: the `root` variable).
        pub root: Option<String>,
        /// `hide`: files to hide.
        pub hide: Option<Vec<String>>,
        /// `index_names`: index file names.
        pub index_names: Option<Vec<String>>,
        /// `browse`: directory listings; present (even empty) enables them.
        pub browse: Option<Browse>,
        /// `canonical_uris`: redirect to add or remove trailing slashes.
        pub canonical_uris: Option<bool>,
        /// `status_code`: override the response status.
        pub status_code: Option<StatusCode>,
        /// `pass_thru`: call the next handler instead of returning 404.
        pub pass_thru: Option<bool>,
        /// `precompressed`: precompressed sidecar encodings, kept as raw JSON.
        pub precompressed: Option<Map<String, Value>>,
        /// `precompressed_order`: preference order of those encodings.
        pub precompressed_order: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `browse` of [`FileServer`].
    pub struct Browse {
        /// `template_file`: a custom listing template.
        pub template_file: Option<String>,
    }
}

lossless_struct! {
    /// The `encode` handler: response compression.
    pub struct Encode {
        /// `encodings`: encoder modules by name (`gzip`, `zstd`, ...), kept as
        /// raw JSON.
        pub encodings: Option<Map<String, Value>>,
        /// `prefer`: preference order of encodings.
        pub prefer: Option<Vec<String>>,
        /// `minimum_length`: minimum response size to compress.
        pub minimum_length: Option<i64>,
        /// `match`: which responses to compress, kept as raw JSON.
        pub matcher: Option<Value> => "match",
    }
}
