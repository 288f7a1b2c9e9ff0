use super::*;

fn parse(text: &str) -> Result<Config> {
    let raw: RawConfig = toml::from_str(text)?;
    let config = Config::from_raw(raw, None)?;
    config.policy()?;
    Ok(config)
}

fn error_of(text: &str) -> String {
    format!("{:#}", parse(text).expect_err("must be refused"))
}

/// The file the documentation and the issue quote; it must work as written.
#[test]
fn the_documented_example_works_as_written() {
    let config = parse(
        r#"
[store]
backend = "sqlite"
path = "/var/lib/greygate/greygate.db"
[greylist]
delay = "5m"
[policy]
listen = ["127.0.0.1:10023", "unix:/run/greygate/policy.sock"]
"#,
    )
    .unwrap();
    assert_eq!(config.store.path, PathBuf::from("/var/lib/greygate/greygate.db"));
    assert_eq!(
        config.policy.listen,
        [ListenAddr::Tcp("127.0.0.1:10023".parse().unwrap()), ListenAddr::Unix("/run/greygate/policy.sock".into())]
    );
    assert_eq!(config.raw.greylist.delay.0.as_secs(), 300);
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = Config::load(None).unwrap();
    assert_eq!(config.store.backend, Backend::Sqlite);
    assert_eq!(config.store.path, PathBuf::from("greygate.db"));
    assert_eq!(config.policy.listen, [ListenAddr::Tcp("127.0.0.1:10023".parse().unwrap())]);
    let p = config.policy().unwrap();
    assert_eq!(
        (p.defaults.timers.delay, p.defaults.timers.retry_window, p.defaults.timers.pass_lifetime),
        (300, 172800, 3110400)
    );
    assert_eq!(p.defaults.auto_whitelist_after, 5);
    assert_eq!((p.keying.ipv4_prefix, p.keying.ipv6_prefix), (24, 64));
    assert!(p.fail_open);
    assert_eq!(p.greylist_reply.code, 451);
    assert!(p.static_lists.iter().any(|e| e.pattern == "google.com" && matches!(e.origin, Origin::Builtin { .. })));
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    for (text, key) in [
        ("[greylist]\ndealy = \"5m\"\n", "dealy"),
        ("[stroe]\npath = \"x\"\n", "stroe"),
        ("[[rule]]\nclient = \"192.0.2.0/24\"\ndely = \"1m\"\n", "dely"),
    ] {
        let e = error_of(text);
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn invalid_values_are_explained() {
    let cases = [
        ("[greylist]\ndelay = \"3d\"\n", "greylist.delay (3d) must be shorter than greylist.retry_window (2d)"),
        ("[greylist]\ndelay = \"5 fortnights\"\n", "invalid duration"),
        ("[greylist]\nipv4_prefix = 33\n", "ipv4_prefix must be 0..=32"),
        ("[policy]\nlisten = [\"localhost\"]\n", "invalid listen address"),
        ("[policy]\nlisten = [\"unix:relative.sock\"]\n", "must be absolute"),
        ("[policy]\nsocket_mode = \"rw\"\n", "octal"),
        ("[replies]\ngreylist = \"550 5.7.1 no\"\n", "expected a 4xx code"),
        ("[replies]\ngreylist = \"451 4.7.1 wait {minutes}\"\n", "unknown placeholder {minutes}"),
        ("[greylist]\nheader = \"not a header\"\n", "Name: value"),
        ("[lists]\ntrusted_networks = [\"example.com\"]\n", "trusted entries must be addresses or CIDR networks"),
        ("[lists]\nwhitelist_clients = [\"/(unclosed/\"]\n", "lists.whitelist_clients"),
        ("[[rule]]\nclient = \"300.0.0.0/8\"\ndelay = \"1m\"\n", "rule \"rule 1\": client"),
        ("[[rule]]\ndelay = \"1m\"\n", "no client, sender or recipient"),
        ("[lists]\nwhitelist_clients_files = [\"/nonexistent/list\"]\n", "cannot read list file /nonexistent/list"),
    ];
    for (text, want) in cases {
        let e = error_of(text);
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn check_config_output_is_a_config_that_loads_to_the_same() {
    let config = parse(
        r#"
[greylist]
delay = "90s"
learning = true
[[rule]]
name = "partners"
client = "203.0.113.0/24"
greylist = false
"#,
    )
    .unwrap();
    let printed = config.to_toml();
    assert!(printed.contains("delay = \"90s\""), "{printed}");
    assert!(printed.contains("retry_window = \"2d\""), "defaults are printed: {printed}");
    assert!(printed.contains("[[rule]]"), "{printed}");
    let again = parse(&printed).unwrap();
    assert_eq!(again.raw, config.raw);
}

#[test]
fn list_files_are_read_and_bad_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients");
    std::fs::write(&file, "# comment\nexample.com\n192.0.2.300\n/^mx\\d+\\./\n").unwrap();
    let config =
        parse(&format!("[lists]\nbuiltin_whitelist = false\nwhitelist_clients_files = [{:?}]\n", file)).unwrap();
    let p = config.policy().unwrap();
    let files: Vec<_> = p
        .static_lists
        .iter()
        .filter_map(|e| match &e.origin {
            Origin::File { line, .. } => Some((e.pattern.as_str(), *line)),
            _ => None,
        })
        .collect();
    assert_eq!(files, [("example.com", 2), ("/^mx\\d+\\./", 4)]);
}

#[test]
fn the_builtin_whitelist_has_no_bad_lines() {
    let mut b = ListsBuilder::new();
    let skipped =
        b.add_file(ListKind::Whitelist, ListTarget::Client, BUILTIN_WHITELIST, |line| Origin::Builtin { line });
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(b.build().is_ok());
}

#[test]
fn serving_threads_leave_a_core_for_the_store_writer() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(parse("").unwrap().threads(), cores.saturating_sub(1).max(1));
    assert_eq!(parse("[server]\nthreads = 3").unwrap().threads(), 3);
    assert!(error_of("[server]\nworkers = 3").contains("workers"));
}
