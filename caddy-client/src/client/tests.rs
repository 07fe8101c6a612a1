use super::*;

fn tcp(s: &str) -> (String, String, u16) {
    match AdminAddress::parse(s) {
        Ok(AdminAddress::Tcp { scheme, host, port }) => (scheme, host, port),
        other => panic!("{s}: {other:?}"),
    }
}

#[test]
fn parses_caddys_address_forms() {
    assert_eq!(
        tcp("localhost:2019"),
        ("http".into(), "localhost".into(), 2019)
    );
    assert_eq!(
        tcp("http://127.0.0.1:2019"),
        ("http".into(), "127.0.0.1".into(), 2019)
    );
    assert_eq!(
        tcp("https://caddy.example:2021/"),
        ("https".into(), "caddy.example".into(), 2021)
    );
    assert_eq!(tcp("[::1]:2019"), ("http".into(), "[::1]".into(), 2019));
    assert_eq!(tcp(":2019"), ("http".into(), "localhost".into(), 2019));
    assert_eq!(
        tcp("tcp/localhost:2019"),
        ("http".into(), "localhost".into(), 2019)
    );
    assert_eq!(
        AdminAddress::parse("unix//run/caddy/admin.sock|0660").ok(),
        Some(AdminAddress::Unix(PathBuf::from("/run/caddy/admin.sock")))
    );
}

#[test]
fn rejects_unusable_addresses_with_a_reason() {
    for bad in [
        "",
        "localhost",
        "ftp://x:1",
        "localhost:99999",
        "localhost:0",
        "http://x:1/config",
        "::1:2019",
        "unix/",
        "localhost#:2019",
        "localhost?:2019",
        "http://user@localhost:2019",
        "local host:2019",
        "localhost\t:2019",
        "local\u{7f}host:2019",
        "[not-ipv6]:2019",
        "évil:2019",
        "a\\b:2019",
    ] {
        let err = AdminAddress::parse(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(
            err.to_string().contains("invalid Caddy admin address"),
            "{err}"
        );
    }
}
