//! Reading the live route back: [`RouteForm`] compares it with the desired
//! one part by part and gives back its table.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{HandlerOut, OwnedRoute};
use crate::desired::{Target, Targets};

/// A route in a compact form for comparing the live route with the desired
/// one: the long `mappings` lists as pairs of small values, everything else
/// as JSON. Two forms are equal exactly when the routes' JSON is, whatever
/// the order of keys. At 10,000 TARTs a route read this way takes about a
/// quarter of the memory of a [`Value`] tree (a `Value` object per mapping).
#[derive(Debug, PartialEq, Deserialize)]
pub struct RouteForm {
    #[serde(default)]
    handle: Option<Vec<HandlerForm>>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct HandlerForm {
    #[serde(default)]
    mappings: Option<Vec<MappingForm>>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

impl HandlerForm {
    fn matches(&self, want: &HandlerOut<'_>) -> bool {
        match want {
            HandlerOut::Other(value) => {
                self.mappings.is_none()
                    && value.as_object().is_some_and(|o| {
                        o.len() == self.rest.len()
                            && o.iter().all(|(k, v)| self.rest.get(k) == Some(v))
                    })
            }
            HandlerOut::Map(m) => {
                let Some(mappings) = &self.mappings else {
                    return false;
                };
                // Every field `MapOut` serializes, but `mappings`.
                let str_is = |key: &str, want: &str| {
                    self.rest.get(key).and_then(Value::as_str) == Some(want)
                };
                let list_is = |key: &str, want: &str| match self.rest.get(key) {
                    Some(Value::Array(items)) => {
                        items.len() == 1 && items[0].as_str() == Some(want)
                    }
                    _ => false,
                };
                self.rest.len() == 5
                    && str_is("@id", &m.id)
                    && str_is("handler", m.handler)
                    && str_is("source", &m.source)
                    && list_is("destinations", &m.destinations[0])
                    && list_is("defaults", m.defaults[0])
                    && mappings.len() == m.mappings.len()
                    && mappings.iter().zip(&m.mappings).all(|(l, w)| {
                        l.rest.is_empty()
                            && l.input.as_ref().and_then(Value::as_str) == Some(w.input)
                            && matches!(&l.outputs, Some(Value::Array(o))
                                if o.len() == 1 && o[0].as_str() == Some(&*w.outputs[0]))
                    })
            }
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
struct MappingForm {
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    outputs: Option<Value>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

impl RouteForm {
    /// Reads a route from its JSON text. Fails when the route does not even
    /// have a route's shape (`handle` not a list of objects, `mappings` not
    /// a list of objects): such a route is not tart-sync's any more.
    pub fn parse(json: &str) -> Result<RouteForm, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// True when this (live) route is, as JSON, exactly `route`: compared
    /// part by part, without building `route`'s JSON.
    pub fn matches(&self, route: &OwnedRoute<'_>) -> bool {
        let Some(handle) = &self.handle else {
            return false;
        };
        self.rest.len() == 2
            && self.rest.get("@id").and_then(Value::as_str) == Some(route.id.as_str())
            && self
                .rest
                .get("match")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                == Some(route.matchers.as_slice())
            && handle.len() == route.handle.len()
            && handle.iter().zip(&route.handle).all(|(h, w)| h.matches(w))
    }

    /// The name → target table the route carries: the mappings of its bucket
    /// maps (for diffs and the mass-removal guard). Unknown shapes give
    /// nothing.
    pub fn targets(&self) -> Targets {
        let mut out = BTreeMap::new();
        for h in self.handle.iter().flatten() {
            let is_bucket = h
                .rest
                .get("@id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.contains("-bucket-"));
            if h.rest.get("handler").and_then(Value::as_str) != Some("map") || !is_bucket {
                continue;
            }
            for m in h.mappings.iter().flatten() {
                let input = m.input.as_ref().and_then(Value::as_str);
                let output = m
                    .outputs
                    .as_ref()
                    .and_then(|o| o.get(0))
                    .and_then(Value::as_str);
                if let (Some(i), Some(o)) = (input, output) {
                    out.insert(i.to_string(), Target::from_lookup(o));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteSettings, Settings};
    use crate::layout::{route, Features, Ids};
    use serde_json::json;

    fn routes(mode: &str) -> RouteSettings {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [caddy]\nadmin = [\"127.0.0.1:2019\"]\n[routes]\ndomain = \"tart.example.org\"\nmode = \"{mode}\"\n"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None)
            .unwrap()
            .routes
    }

    /// 300 names over several buckets, some offline.
    fn fleet() -> Targets {
        (0..300)
            .map(|i| {
                let target = if i % 7 == 0 {
                    Target::Offline
                } else {
                    Target::Dial(format!("100.64.{}.{}:80", i / 250, i % 250 + 1))
                };
                (format!("tart-{i:03}"), target)
            })
            .collect()
    }

    fn form(value: &Value) -> RouteForm {
        RouteForm::parse(&value.to_string()).unwrap()
    }

    #[test]
    fn the_route_written_matches_itself_and_gives_back_its_table() {
        let targets = fleet();
        for mode in ["path", "host"] {
            for stream_close_delay in [false, true] {
                let routes = routes(mode);
                let features = Features { stream_close_delay };
                let route = route(&targets, &routes, features);
                let text = serde_json::to_string(&route).unwrap();
                let live = RouteForm::parse(&text).unwrap();
                assert!(live.matches(&route), "{mode}, {stream_close_delay}");
                assert_eq!(live.targets(), targets);
                // Caddy answers with keys sorted and <, >, & escaped as Go does.
                let go_style =
                    serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap())
                        .unwrap()
                        .replace('<', "\\u003c")
                        .replace('>', "\\u003e")
                        .replace('&', "\\u0026");
                assert_ne!(go_style, text);
                assert!(RouteForm::parse(&go_style).unwrap().matches(&route));
            }
        }
    }

    #[test]
    fn any_edit_of_the_live_route_is_a_difference() {
        let targets = fleet();
        let routes = routes("path");
        let features = Features::default();
        let route = route(&targets, &routes, features);
        let json = serde_json::to_value(&route).unwrap();
        assert!(form(&json).matches(&route));
        let bucket = 1; // handle[0] is the index map, handle[1] the first bucket
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "a mapping's output",
                Box::new(move |v| {
                    v["handle"][bucket]["mappings"][3]["outputs"][0] = json!("10.0.0.1:80")
                }),
            ),
            (
                "a mapping's input",
                Box::new(move |v| v["handle"][bucket]["mappings"][3]["input"] = json!("evil")),
            ),
            (
                "a mapping removed",
                Box::new(move |v| {
                    v["handle"][bucket]["mappings"]
                        .as_array_mut()
                        .unwrap()
                        .pop();
                }),
            ),
            (
                "a second output",
                Box::new(move |v| {
                    v["handle"][bucket]["mappings"][0]["outputs"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!("x"));
                }),
            ),
            (
                "a key added to a mapping",
                Box::new(move |v| v["handle"][bucket]["mappings"][0]["note"] = json!(1)),
            ),
            (
                "a bucket's source",
                Box::new(move |v| v["handle"][bucket]["source"] = json!("{http.request.host}")),
            ),
            (
                "a bucket's default",
                Box::new(move |v| v["handle"][bucket]["defaults"] = json!(["10.0.0.1:80"])),
            ),
            (
                "a key added to a bucket",
                Box::new(move |v| v["handle"][bucket]["x"] = json!(true)),
            ),
            (
                "the index map",
                Box::new(|v| v["handle"][0]["mappings"][0]["outputs"][0] = json!("{x}")),
            ),
            (
                "the revision stamp",
                Box::new(|v| {
                    let vars = v["handle"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .find(|h| h["handler"] == "vars")
                        .unwrap();
                    vars[Ids::new("tart-sync").rev_var] = json!("0000000000000000");
                }),
            ),
            (
                "the offline page",
                Box::new(|v| {
                    let last = v["handle"].as_array_mut().unwrap().last_mut().unwrap();
                    last["routes"][1]["handle"][0]["body"] = json!("gone");
                }),
            ),
            (
                "the matcher",
                Box::new(|v| v["match"][0]["host"] = json!(["evil.example"])),
            ),
            (
                "a second matcher set",
                Box::new(|v| v["match"].as_array_mut().unwrap().push(json!({}))),
            ),
            (
                "a key added to the route",
                Box::new(|v| v["terminal"] = json!(true)),
            ),
            (
                "a handler added",
                Box::new(|v| {
                    v["handle"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"handler": "vars"}))
                }),
            ),
            (
                "a handler removed",
                Box::new(|v| {
                    v["handle"].as_array_mut().unwrap().pop();
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut edited = json.clone();
            edit(&mut edited);
            assert_ne!(edited, json, "{what}: the edit changed nothing");
            assert!(!form(&edited).matches(&route), "{what} went unnoticed");
        }
    }

    #[test]
    fn a_route_without_a_routes_shape_is_refused() {
        for text in [
            r#"{"handle": 5}"#,
            r#"{"handle": [1]}"#,
            r#"{"handle": [{"mappings": {}}]}"#,
            "[]",
        ] {
            assert!(RouteForm::parse(text).is_err(), "{text}");
        }
        let empty = RouteForm::parse("{}").unwrap();
        assert!(empty.targets().is_empty());
        let targets = fleet();
        let route = route(&targets, &routes("path"), Features::default());
        assert!(!empty.matches(&route));
    }
}
