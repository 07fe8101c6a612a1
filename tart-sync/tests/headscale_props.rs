//! The headscale parser, given arbitrary bytes or arbitrary JSON, never
//! panics: it returns nodes (skipping what it cannot read, with a reason)
//! or a decode error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tart_sync::headscale::{parse_node_list, HeadscaleError};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "[0-9]{1,25}".prop_map(Value::String),
        "(19|20|99)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names headscale uses, and others.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_string()),
        Just("name".to_string()),
        Just("givenName".to_string()),
        Just("user".to_string()),
        Just("ipAddresses".to_string()),
        Just("online".to_string()),
        Just("lastSeen".to_string()),
        Just("expiry".to_string()),
        Just("tags".to_string()),
        Just("validTags".to_string()),
        Just("forcedTags".to_string()),
        Just("nodes".to_string()),
        Just("machines".to_string()),
        "[a-zA-Z]{1,8}",
    ]
}

/// A list whose items look like nodes, with fields of any type.
fn node_like_list() -> impl Strategy<Value = Value> {
    let node = prop::collection::btree_map(field(), any_json(), 0..10)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()));
    (
        prop_oneof![Just("nodes"), Just("machines")],
        prop::collection::vec(prop_oneof![node, any_json()], 0..12),
    )
        .prop_map(|(key, items)| json!({ key: items }))
}

fn parses_or_fails_cleanly(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_node_list(body) {
        Ok(list) => {
            for skipped in &list.skipped {
                prop_assert!(!skipped.reason.is_empty());
            }
        }
        Err(HeadscaleError::Decode { .. }) => {}
        Err(other) => prop_assert!(false, "not a decode error: {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        parses_or_fails_cleanly(&body)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        parses_or_fails_cleanly(value.to_string().as_bytes())?;
    }

    #[test]
    fn node_like_lists_with_any_field_types_never_panic(value in node_like_list()) {
        let body = value.to_string();
        parses_or_fails_cleanly(body.as_bytes())?;
        // Every item is accounted for: read, or skipped with a reason.
        if let Ok(list) = parse_node_list(body.as_bytes()) {
            let items = value.as_object().and_then(|o| o.values().next()).and_then(Value::as_array).map_or(0, Vec::len);
            prop_assert_eq!(list.nodes.len() + list.skipped.len(), items);
        }
    }
}
