use super::*;
use time::macros::datetime;

#[test]
fn timestamps_with_0_to_9_fraction_digits() {
    assert_eq!(
        parse_timestamp("2024-09-20T08:00:00Z").ok().flatten(),
        Some(datetime!(2024-09-20 08:00:00 UTC))
    );
    assert_eq!(
        parse_timestamp("2023-06-01T11:40:02.5Z").ok().flatten(),
        Some(datetime!(2023-06-01 11:40:02.5 UTC))
    );
    assert_eq!(
        parse_timestamp("2026-07-10T08:15:02.123456789Z")
            .ok()
            .flatten(),
        Some(datetime!(2026-07-10 08:15:02.123456789 UTC))
    );
    assert_eq!(
        parse_timestamp("2026-07-10T10:15:02+02:00").ok().flatten(),
        Some(datetime!(2026-07-10 08:15:02 UTC))
    );
}

#[test]
fn zero_time_null_and_empty_mean_never() {
    assert!(matches!(parse_timestamp("0001-01-01T00:00:00Z"), Ok(None)));
    assert!(matches!(timestamp(None), Ok(None)));
    assert!(matches!(timestamp(Some(&Text("".into()))), Ok(None)));
    let zero = Text("0001-01-01T00:00:00Z".into());
    assert!(matches!(timestamp(Some(&zero)), Ok(None)));
}

#[test]
fn bad_timestamps_are_errors() {
    assert!(parse_timestamp("yesterday").is_err());
    assert!(parse_timestamp("2024-13-01T00:00:00Z").is_err());
    let err = timestamp(Some(&Text("soon".into()))).unwrap_err();
    assert!(err.starts_with("\"soon\" is not a timestamp"), "{err}");
}

#[test]
fn dns_labels() {
    assert!(is_valid_dns_label("rhodes"));
    assert!(is_valid_dns_label("tart-1"));
    assert!(is_valid_dns_label("a"));
    assert!(is_valid_dns_label(&"a".repeat(63)));
    assert!(!is_valid_dns_label(&"a".repeat(64)));
    assert!(!is_valid_dns_label(""));
    assert!(!is_valid_dns_label("-a"));
    assert!(!is_valid_dns_label("a-"));
    assert!(!is_valid_dns_label("Mike's laptop"));
    assert!(!is_valid_dns_label("UPPER"));
    assert!(!is_valid_dns_label("a.b"));
}

#[test]
fn what_is_read_of_a_node() {
    let body = br#"{"nodes":[
        {"id":" 7 ","name":"","user":{"name":"alice"},"ipAddresses":[],"expiry":"",
         "extra":{"deep":[1,{"id":"x"}]},"preAuthKey":null},
        {"id":8,"user":{"id":"1","name":"b"},"online":true,
         "ipAddresses":["100.64.0.8/32"," fd7a::8 ","x/y"],
         "validTags":["a","b"],"forcedTags":["b","c"]},
        {"id":"9","name":"tart\u002dnine","giv\u0065nName":"nine","tags":[],"validTags":["a"],
         "lastSeen":"2024-01-01T00:00:00+01:00","expiry":null,"user":null},
        {"id":"12","lastSeen":"yesterday","tags":null,"validTags":["v"],"online":null}
    ],"other":"ignored"}"#;
    let list = parse_node_list(body).unwrap();
    assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    let ids: Vec<u64> = list.nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, [7, 8, 9, 12]);

    let seven = &list.nodes[0];
    assert_eq!((seven.name.as_str(), seven.given_name.as_str()), ("", ""));
    assert_eq!(seven.user, "alice");
    assert!(seven.ip_addresses.is_empty() && !seven.online);
    assert_eq!((seven.last_seen, seven.expiry), (None, None));
    assert!(seven.tags.is_empty());

    let eight = &list.nodes[1];
    assert_eq!(eight.user, "b");
    assert!(eight.online);
    let v4: IpAddr = Ipv4Addr::new(100, 64, 0, 8).into();
    let v6: IpAddr = "fd7a::8".parse().unwrap();
    assert_eq!(eight.ip_addresses, [v4, v6]);
    assert_eq!(eight.tags, ["a", "b", "c"]);

    let nine = &list.nodes[2];
    assert_eq!(
        (nine.name.as_str(), nine.given_name.as_str()),
        ("tart-nine", "nine")
    );
    assert_eq!(nine.user, "");
    assert!(nine.tags.is_empty(), "`tags` wins over the older fields");
    assert_eq!(nine.last_seen, Some(datetime!(2023-12-31 23:00 UTC)));

    let twelve = &list.nodes[3];
    assert_eq!(twelve.last_seen, None, "an unparsable lastSeen is ignored");
    assert_eq!(twelve.tags, ["v"]);
    assert!(!twelve.online);
}

#[test]
fn malformed_nodes_are_skipped_with_the_reason() {
    let body = br#"{"nodes":[
        {"id":"1"},
        null,
        [1],
        {"id":-1,"name":"neg"},
        {"id":1.5,"givenName":"","name":"float"},
        {"id":true},
        {"givenName":"no-id"},
        {"id":"x"},
        {"id":"10","givenName":"bad","expiry":"soon"},
        {"id":"11","givenName":"eleven","expiry":5},
        {"id":"12","name":"twelve","online":"true"},
        {"id":"13","ipAddresses":["100.64.0.13",5]},
        {"id":"14","user":{"name":["x"]}},
        {"id":"15","id":"16"},
        {"id":"17"}
    ]}"#;
    let list = parse_node_list(body).unwrap();
    let ids: Vec<u64> = list.nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, [1, 17]);
    let skipped: Vec<(usize, Option<&str>, Option<&str>, &str)> = list
        .skipped
        .iter()
        .map(|s| {
            (
                s.index,
                s.id.as_deref(),
                s.name.as_deref(),
                s.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (1, None, None, "expected an object, found null"),
            (2, None, None, "expected an object, found an array"),
            (3, Some("-1"), Some("neg"), "invalid id -1"),
            (4, Some("1.5"), Some("float"), "invalid id 1.5"),
            (5, None, None, "invalid id (a boolean)"),
            (6, None, Some("no-id"), "missing id"),
            (7, Some("x"), None, "invalid id \"x\""),
            (
                8,
                Some("10"),
                Some("bad"),
                "expiry: \"soon\" is not a timestamp: the 'year' component could not be parsed"
            ),
            (
                9,
                Some("11"),
                Some("eleven"),
                "expiry: invalid type: integer `5`, expected a string"
            ),
            (
                10,
                Some("12"),
                Some("twelve"),
                "online: invalid type: string \"true\", expected a boolean"
            ),
            (
                11,
                Some("13"),
                None,
                "ipAddresses[1]: invalid type: integer `5`, expected a string"
            ),
            (
                12,
                Some("14"),
                None,
                "user.name: invalid type: sequence, expected a string"
            ),
            (13, None, None, "duplicate field `id`"),
        ]
    );
    assert_eq!(
        list.skipped[2].to_string(),
        "node #3 (id -1) \"neg\": invalid id -1"
    );
}

#[test]
fn list_keys() {
    let ids = |body: &[u8]| {
        parse_node_list(body)
            .map(|l| l.nodes.iter().map(|n| n.id).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    assert_eq!(ids(br#"{"nodes":null}"#), Ok(vec![]));
    assert_eq!(ids(br#"{"machines":null}"#), Ok(vec![]));
    assert_eq!(ids(br#" {"machines":[{"id":"1"}]} "#), Ok(vec![1]));
    assert_eq!(ids(br#"{"x":1,"nodes":[{"id":"2"}],"y":[]}"#), Ok(vec![2]));
    // One list per answer: headscale never sends both.
    let both = ids(br#"{"nodes":[{"id":"2"}],"machines":[{"id":"1"}]}"#);
    assert!(both.is_err_and(|e| e.contains("duplicate field `nodes`")));
    assert!(ids(b"{}").is_err_and(|e| e.contains("no \"nodes\" or \"machines\" list")));
    let not_a_list = ids(br#"{"nodes":{}}"#);
    assert!(not_a_list.is_err_and(|e| e.contains("expected a sequence")));
    assert!(ids(b" [] ").is_err_and(|e| e.contains("expected a JSON object, found an array")));
    assert!(ids(b"null").is_err_and(|e| e.contains("found null")));
    assert!(ids(br#"{"nodes":[]} x"#).is_err_and(|e| e.contains("trailing characters")));
    assert!(ids(b"").is_err_and(|e| e.contains("EOF")));
    assert!(ids(b"{\"nodes\":[\xff]}").is_err_and(|e| e.contains("not UTF-8")));
}

#[test]
fn tags_each_once_in_the_order_first_seen() {
    let texts = |list: &[&'static str]| -> Vec<Text<'static>> {
        list.iter().map(|s| Text(Cow::Borrowed(*s))).collect()
    };
    let (few, more) = (texts(&["b", "a", "b"]), texts(&["c", "a", "d"]));
    assert_eq!(unique(&[&few, &more]), ["b", "a", "c", "d"]);
    let many = texts(&["x", "b", "x", "a", "b", "y", "a", "x", "z", "b"]);
    assert_eq!(unique(&[&many]), ["x", "b", "a", "y", "z"]);
    assert_eq!(unique(&[&many, &few]), ["x", "b", "a", "y", "z"]);
    assert!(unique(&[&[], &[]]).is_empty());
}

#[test]
fn a_node_with_100000_tags_is_read_with_each_tag_once() {
    let many: Vec<String> = (0..100_000).map(|i| format!("tag:t{}", i % 1000)).collect();
    let body = serde_json::json!({"nodes": [
        {"id": "1", "tags": many},
        {"id": "2", "validTags": many, "forcedTags": ["tag:forced", "tag:t999"]},
    ]})
    .to_string();
    let list = parse_node_list(body.as_bytes()).unwrap();
    let expected: Vec<String> = many[..1000].to_vec();
    assert_eq!(list.nodes[0].tags, expected);
    assert_eq!(list.nodes[1].tags[..1000], expected);
    assert_eq!(list.nodes[1].tags[1000..], ["tag:forced"]);
}
