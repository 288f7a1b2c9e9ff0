use super::*;

fn who<'a>(ip: &str, name: Option<&'a str>, sender: Option<&'a str>, rcpt: Option<&'a str>) -> Who<'a> {
    Who { ip: ip.parse().unwrap(), client_name: name, sender, recipient: rcpt }
}

/// Lines in the shapes postgrey's shipped whitelist_clients uses.
const POSTGREY_CLIENTS: &str = "\
# postgrey whitelist for mail client hostnames
# --------------------------------------------
# greylisting.org: Southwest Airlines (unique sender, no retry)
southwest.com
/^ms-smtp.*\\.rr\\.com$/
66.216.126.174
195.235.39
12.5.136.141/31
2a00:1450:4000::/37   # gmail ipv6
this line is broken
";

const POSTGREY_RECIPIENTS: &str = "\
postmaster@
abuse@
lists.example.org
@only.example.net
boss@example.com
/^noreply-.*@example\\.com$/
";

fn whitelists() -> Lists {
    let mut b = ListsBuilder::new();
    let origin = |line| Origin::File { path: "whitelist_clients".into(), line };
    let skipped = b.add_file(ListKind::Whitelist, ListTarget::Client, POSTGREY_CLIENTS, origin);
    assert_eq!(skipped.len(), 1, "only the broken line is skipped: {skipped:?}");
    assert_eq!(skipped[0].line, 10);
    let skipped = b.add_file(ListKind::Whitelist, ListTarget::Recipient, POSTGREY_RECIPIENTS, |line| Origin::File {
        path: "whitelist_recipients".into(),
        line,
    });
    assert!(skipped.is_empty(), "{skipped:?}");
    b.build().unwrap()
}

#[test]
fn client_whitelist_matches_postgrey_semantics() {
    let lists = whitelists();
    let hit = |ip, name| lists.whitelisted(&who(ip, name, Some("s@x"), Some("r@y"))).map(|(t, s)| (t, s.to_string()));
    let cases: Vec<(&str, Option<&str>, Option<&str>)> = vec![
        ("192.0.2.1", Some("mail.southwest.com"), Some("southwest.com (whitelist_clients:4)")),
        ("192.0.2.1", Some("southwest.com"), Some("southwest.com (whitelist_clients:4)")),
        ("192.0.2.1", Some("notsouthwest.com"), None),
        ("192.0.2.1", Some("MS-SMTP-01.nyc.RR.com."), Some("/^ms-smtp.*\\.rr\\.com$/ (whitelist_clients:5)")),
        ("66.216.126.174", None, Some("66.216.126.174 (whitelist_clients:6)")),
        ("195.235.39.200", None, Some("195.235.39 (whitelist_clients:7)")),
        ("12.5.136.140", None, Some("12.5.136.141/31 (whitelist_clients:8)")),
        ("12.5.136.142", None, None),
        ("2a00:1450:4010:c05::1a", None, Some("2a00:1450:4000::/37 (whitelist_clients:9)")),
        ("::ffff:66.216.126.174", None, Some("66.216.126.174 (whitelist_clients:6)")),
        // Host entries only ever match a verified name.
        ("192.0.2.1", None, None),
    ];
    for (ip, name, want) in cases {
        let got = hit(ip, name);
        assert_eq!(got.as_ref().map(|(_, s)| s.as_str()), want, "{ip} {name:?}");
        if let Some((target, _)) = got {
            assert_eq!(target, ListTarget::Client);
        }
    }
}

#[test]
fn recipient_whitelist_matches_access5_semantics() {
    let lists = whitelists();
    let hit = |rcpt: &str| {
        lists.whitelisted(&who("192.0.2.1", None, Some("s@x"), Some(rcpt))).map(|(_, s)| s.pattern.clone())
    };
    let cases = [
        ("postmaster@anything.example", Some("postmaster@")),
        ("Postmaster+tag@anything.example", Some("postmaster@")),
        ("abuse@x", Some("abuse@")),
        ("someone@lists.example.org", Some("lists.example.org")),
        ("someone@sub.lists.example.org", Some("lists.example.org")),
        ("someone@only.example.net", Some("@only.example.net")),
        ("someone@sub.only.example.net", None),
        ("boss@example.com", Some("boss@example.com")),
        ("boss+x@example.com", Some("boss@example.com")),
        ("bossy@example.com", None),
        ("noreply-42@example.com", Some("/^noreply-.*@example\\.com$/")),
        ("nobody@example.com", None),
        ("", None),
    ];
    for (rcpt, want) in cases {
        assert_eq!(hit(rcpt).as_deref(), want, "{rcpt:?}");
    }
}

#[test]
fn trusted_blacklist_and_sender_lists() {
    let mut b = ListsBuilder::new();
    b.add(ListKind::Trust, ListTarget::Client, "10.0.0.0/8", Origin::Config).unwrap();
    b.add(ListKind::Trust, ListTarget::Client, "::1", Origin::Store).unwrap();
    assert!(b.add(ListKind::Trust, ListTarget::Client, "example.com", Origin::Config).is_err());
    assert!(b.add(ListKind::Trust, ListTarget::Sender, "a@b", Origin::Config).is_err());
    b.add(ListKind::Blacklist, ListTarget::Sender, "spammer.example", Origin::Store).unwrap();
    b.add(ListKind::Blacklist, ListTarget::Client, "203.0.113.0/24", Origin::Store).unwrap();
    b.add(ListKind::Whitelist, ListTarget::Sender, "<>", Origin::Config).unwrap();
    let lists = b.build().unwrap();

    assert_eq!(lists.trusted("10.2.3.4".parse().unwrap()).unwrap().to_string(), "10.0.0.0/8 (config)");
    assert_eq!(lists.trusted("::1".parse().unwrap()).unwrap().to_string(), "::1 (store)");
    assert!(lists.trusted("192.0.2.1".parse().unwrap()).is_none());

    let black = lists.blacklisted(&who("192.0.2.1", None, Some("x@mail.spammer.example"), Some("r@y")));
    assert_eq!(black.map(|(t, s)| (t, s.pattern.as_str())), Some((ListTarget::Sender, "spammer.example")));
    let black = lists.blacklisted(&who("203.0.113.9", None, Some("a@b"), Some("r@y")));
    assert_eq!(black.map(|(t, _)| t), Some(ListTarget::Client));
    assert!(lists.blacklisted(&who("192.0.2.1", None, Some("a@b"), Some("r@y"))).is_none());

    let null = lists.whitelisted(&who("192.0.2.1", None, Some(""), Some("r@y")));
    assert_eq!(null.map(|(t, _)| t), Some(ListTarget::Sender));
    assert!(lists.whitelisted(&who("192.0.2.1", None, Some("a@b"), Some("r@y"))).is_none());
}

#[test]
fn first_entry_wins_and_bad_regex_in_config_is_an_error() {
    let mut b = ListsBuilder::new();
    b.add(ListKind::Whitelist, ListTarget::Client, "example.com", Origin::Config).unwrap();
    b.add(ListKind::Whitelist, ListTarget::Client, "example.com", Origin::Store).unwrap();
    assert!(matches!(
        b.add(ListKind::Whitelist, ListTarget::Client, "/(unclosed/", Origin::Config),
        Err(PatternError::Regex(..))
    ));
    let lists = b.build().unwrap();
    let hit = lists.whitelisted(&who("192.0.2.1", Some("mx.example.com"), None, None)).unwrap();
    assert_eq!(hit.1.origin, Origin::Config);
}

#[test]
fn suffixes_are_every_label_boundary_and_never_empty() {
    let all = |s| suffixes(s).collect::<Vec<_>>();
    assert_eq!(all("mx1.mail.example.com"), ["mx1.mail.example.com", "mail.example.com", "example.com", "com"]);
    assert_eq!(all("a..b"), ["a..b", ".b", "b"]);
    assert_eq!(all(".a"), [".a", "a"]);
    assert_eq!(all("a."), ["a."]);
    assert_eq!(all("é.ü"), ["é.ü", "ü"]);
    assert!(all("").is_empty());
}

#[test]
fn a_client_list_of_networks_matches_by_address_and_one_of_names_by_name() {
    let mut b = ListsBuilder::new();
    b.add(ListKind::Blacklist, ListTarget::Client, "192.0.2.0/24", Origin::Config).unwrap();
    b.add(ListKind::Whitelist, ListTarget::Client, "Example.COM", Origin::Config).unwrap();
    let lists = b.build().unwrap();
    let named = who("198.51.100.7", Some("MX.example.com."), None, None);
    assert!(lists.blacklisted(&named).is_none());
    assert!(lists.blacklisted(&who("192.0.2.9", Some("mx.example.com"), None, None)).is_some());
    assert_eq!(
        lists.whitelisted(&named).map(|(t, s)| (t, s.pattern.as_str())),
        Some((ListTarget::Client, "Example.COM"))
    );
}
