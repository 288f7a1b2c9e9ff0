//! The admin CLI, run while the server runs, as an administrator would.

use std::time::Duration;

use greygate_testkit::greygate::run;
use greygate_testkit::policy::{PolicyClient, rcpt_request};
use greygate_testkit::wait_for;

use crate::{admin, bin, server};

fn ask(c: &mut PolicyClient, ip: &str, sender: &str, rcpt: &str) -> String {
    c.ask(&rcpt_request(ip, sender, rcpt, "i"))
}

#[test]
fn list_changes_take_effect_without_a_restart() {
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    assert!(ask(&mut c, "203.0.113.5", "a@b.example", "r@x.example").starts_with("DEFER_IF_PERMIT"));

    let (code, out) = admin(&g, &["whitelist", "add", "--client", "203.0.113.0/24", "--comment", "partner"]);
    assert_eq!((code, out.trim()), (0, "added client 203.0.113.0/24 to the whitelist"));
    wait_for("the whitelist to apply", Duration::from_secs(5), || {
        (ask(&mut c, "203.0.113.5", "a@b.example", "r@x.example") == "DUNNO").then_some(())
    });
    let (_, listed) = admin(&g, &["whitelist", "list"]);
    assert!(listed.contains("203.0.113.0/24") && listed.contains("partner"), "{listed}");

    let (code, _) = admin(&g, &["blacklist", "add", "--sender", "spam.example"]);
    assert_eq!(code, 0);
    wait_for("the blacklist to apply", Duration::from_secs(5), || {
        ask(&mut c, "192.0.2.1", "x@spam.example", "r@x.example").starts_with("554").then_some(())
    });

    let (code, _) = admin(&g, &["trust", "add", "192.0.2.0/24"]);
    assert_eq!(code, 0);
    wait_for("the trust to apply", Duration::from_secs(5), || {
        (ask(&mut c, "192.0.2.1", "x@spam.example", "r@x.example") == "DUNNO").then_some(())
    });

    let (code, _) = admin(&g, &["whitelist", "remove", "--client", "203.0.113.0/24"]);
    assert_eq!(code, 0);
    wait_for("the removal to apply", Duration::from_secs(5), || {
        ask(&mut c, "203.0.113.5", "a@b.example", "r@x.example").starts_with("DEFER").then_some(())
    });
    // Bad entries are refused with the reason, nothing is stored.
    let (code, _) = admin(&g, &["trust", "add", "example.com"]);
    assert_ne!(code, 0);
    let (code, _) = admin(&g, &["whitelist", "remove", "--client", "never.added.example"]);
    assert_eq!(code, 3);
}

#[test]
fn entries_list_show_and_delete_with_filters() {
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    for (ip, sender) in
        [("192.0.2.1", "a@one.example"), ("192.0.2.2", "b+tag@one.example"), ("198.51.100.1", "c@two.example")]
    {
        assert!(ask(&mut c, ip, sender, "r@x.example").starts_with("DEFER"));
    }
    let (_, json) = admin(&g, &["entries", "list", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(all.len(), 3);
    let (_, out) = admin(&g, &["entries", "list", "--sender", "*@one.example"]);
    assert_eq!(out.lines().count(), 3, "header and two entries:\n{out}");
    assert!(out.contains("b@one.example"), "stored normalised:\n{out}");
    let (_, out) = admin(&g, &["entries", "list", "--client", "198.51.100.0/24", "--state", "pending"]);
    assert!(out.contains("c@two.example") && out.lines().count() == 2, "{out}");

    let (code, out) = admin(
        &g,
        &["entries", "show", "--client-ip", "192.0.2.99", "--sender", "A@One.example", "--recipient", "r@x.example"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("key:        192.0.2.0/24/a@one.example/r@x.example") && out.contains("state:      pending"),
        "{out}"
    );

    let (code, _) = admin(&g, &["entries", "delete"]);
    assert_ne!(code, 0, "deleting everything needs --all");
    let (code, out) = admin(&g, &["entries", "delete", "--sender", "*@one.example"]);
    assert_eq!((code, out.trim()), (0, "deleted 2 entries"));
    // The server sees the deletion: the next attempt is new again.
    let again = ask(&mut c, "192.0.2.1", "a@one.example", "r@x.example");
    assert!(again.ends_with("retry in 300 seconds"), "{again}");
    let (code, _) = admin(
        &g,
        &["entries", "show", "--client-ip", "192.0.2.2", "--sender", "b@one.example", "--recipient", "r@x.example"],
    );
    assert_eq!(code, 3, "show reports a missing entry");
}

#[test]
fn stats_purge_and_explain() {
    // Delay 2 s: `explain` just after the first attempts must still find
    // them too soon, even across a second boundary (whole seconds).
    let (_dir, mut g) = server("[greylist]\ndelay = \"2s\"\nretry_window = \"3s\"\n");
    let mut c = PolicyClient::connect(g.addr());
    for i in 0..5 {
        assert!(ask(&mut c, "192.0.2.1", &format!("s{i}@x.example"), "r@x.example").starts_with("DEFER"));
    }
    // Explain changes nothing.
    let (code, out) =
        admin(&g, &["explain", "--client-ip", "192.0.2.1", "--sender", "s0@x.example", "--recipient", "r@x.example"]);
    assert_eq!(code, 0);
    assert!(out.contains("key            192.0.2.0/24/s0@x.example/r@x.example"), "{out}");
    assert!(out.contains("verdict        defer") && out.contains("policy answer  action=DEFER_IF_PERMIT"), "{out}");
    let (_, out) = admin(&g, &["explain", "--client-ip", "127.0.0.1", "--sender", "<>", "--recipient", "r@x.example"]);
    assert!(out.contains("trusted        yes: 127.0.0.0/8 (config)"), "{out}");

    assert!(g.stop().success());
    let config = g.config.to_str().unwrap().to_owned();
    let stats = |dir: &std::path::Path| -> serde_json::Value {
        let (code, out, _) = run(bin(), dir, &["--config", &config, "stats", "--json"]);
        assert_eq!(code, 0);
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(stats(&g.dir)["stats"]["counters"]["new"], 5);
    // The retry window is 3 s, counted in whole seconds.
    let expired = wait_for("the entries to expire", Duration::from_secs(10), || {
        let s = stats(&g.dir);
        (s["stats"]["expired"] == 5).then_some(s)
    });
    assert_eq!(expired["stats"]["pending"], 0);
    let (code, out, _) = run(bin(), &g.dir, &["--config", &config, "purge"]);
    assert_eq!((code, out.trim()), (0, "deleted 5 records"));
    let after = stats(&g.dir);
    assert_eq!((after["stats"]["expired"].as_u64(), after["stats"]["pending"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn import_postgrey_files_into_the_running_server() {
    let (dir, g) = server("[lists]\nbuiltin_whitelist = false\n");
    let clients = dir.path().join("postgrey_whitelist_clients");
    std::fs::write(
        &clients,
        "# postgrey format\nfriendly.example\n/^mx\\d+\\.pool\\.example$/\n203.0.113\nnot a valid line\n",
    )
    .unwrap();
    let recipients = dir.path().join("postgrey_whitelist_recipients");
    std::fs::write(&recipients, "postmaster@\nsales@shop.example\n").unwrap();
    let (code, out) = admin(&g, &["import", "postgrey-clients", clients.to_str().unwrap()]);
    assert_eq!(code, 3, "a skipped line is reported in the exit status");
    assert!(out.contains("3 added to the whitelist (client), 0 already there, 1 skipped"), "{out}");
    let (code, out) = admin(&g, &["import", "postgrey-recipients", recipients.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    let mut c = PolicyClient::connect(g.addr());
    let named = |name: &str, ip: &str| {
        rcpt_request(ip, "a@b.example", "r@x.example", "i")
            .replace("client_name=unknown", &format!("client_name={name}"))
    };
    // The server reloads lists every 100 ms, possibly in the middle of an
    // import: wait for the last entry added, then every entry is there.
    wait_for("the imported lists to apply", Duration::from_secs(5), || {
        (ask(&mut c, "192.0.2.3", "a@b.example", "sales+x@shop.example") == "DUNNO").then_some(())
    });
    assert_eq!(c.ask(&named("mx7.pool.example", "192.0.2.1")), "DUNNO");
    assert_eq!(ask(&mut c, "192.0.2.9", "a@b.example", "postmaster@any.example"), "DUNNO");
    assert_eq!(c.ask(&named("smtp.friendly.example", "192.0.2.2")), "DUNNO");
    assert_eq!(c.ask(&named("unknown", "203.0.113.77")), "DUNNO");
    assert!(ask(&mut c, "192.0.2.3", "a@b.example", "bob@shop.example").starts_with("DEFER"));
}

#[test]
fn check_config_prints_the_effective_config_and_names_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    // The example from the documentation, as written.
    let example = dir.path().join("example.toml");
    std::fs::write(
        &example,
        "[store]\nbackend = \"sqlite\"\npath = \"/var/lib/greygate/greygate.db\"\n[greylist]\ndelay = \"5m\"\n[policy]\nlisten = [\"127.0.0.1:10023\", \"unix:/run/greygate/policy.sock\"]\n",
    )
    .unwrap();
    let (code, out, err) = run(bin(), dir.path(), &["--config", example.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "path = \"/var/lib/greygate/greygate.db\"",
        "delay = \"5m\"",
        "retry_window = \"2d\"",
        "pass_lifetime = \"36d\"",
        "auto_whitelist_after = 5",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[greylist]\ndealy = \"5m\"\n").unwrap();
    let (code, _, err) = run(bin(), dir.path(), &["--config", bad.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `dealy`"), "{err}");
    let (code, out, _) = run(bin(), dir.path(), &["check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("listen = [\"127.0.0.1:10023\"]") && out.contains("path = \"greygate.db\""), "{out}");
}
