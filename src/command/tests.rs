//! Parsing tests: the typed commands and the refusals, word for word.

use super::*;

/// `line` parsed as a command; the line and what it gave when not one.
pub(super) fn cmd(line: &str) -> Cmd {
    match parse_line(line) {
        Ok(Request::Command(c)) => c,
        other => panic!("{line}: {other:?}"),
    }
}

/// Why `line` is refused; the line and its parse when it is not.
pub(super) fn err(line: &str) -> String {
    match parse_line(line) {
        Err(e) => e.message,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn a_plain_tcp_server_is_refused_without_insecure() {
    let add = "servers:add s2 --docker tcp://10.0.0.5:2375 --address 10.0.0.5 --memory 512";
    assert_eq!(
        err(add),
        format!(
            "servers:add: tcp://10.0.0.5:2375 has no TLS: anyone who reaches it controls that Docker engine; give --tls-ca, --tls-cert and --tls-key (dockerd --tlsverify), or --insecure for an engine on a trusted private network; usage: {}",
            spec("servers:add").unwrap().usage
        )
    );
    match cmd(&format!("{add} --insecure")) {
        Cmd::ServersAdd(new) => assert!(new.insecure && new.tls.is_none()),
        other => panic!("{other:?}"),
    }
    match cmd("servers:add s3 --docker unix:///run/d.sock --address 10.0.0.6 --memory 512") {
        Cmd::ServersAdd(new) => assert!(!new.insecure),
        other => panic!("{other:?}"),
    }
    assert!(
        err(
            "servers:add s3 --docker unix:///run/d.sock --address 10.0.0.6 --memory 512 --insecure"
        )
        .contains("--insecure is for a tcp:// engine without TLS, not unix:///run/d.sock")
    );
}

#[test]
fn git_paths() {
    for (line, want) in [
        ("git-receive-pack '/myapp'", "myapp"),
        ("git-receive-pack 'myapp.git'", "myapp"),
        ("git-receive-pack '/myapp.git/'", "myapp"),
        ("git-upload-pack '/my-app'", "my-app"),
    ] {
        match parse_line(line).unwrap() {
            Request::Git { app, .. } => assert_eq!(app, want),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn hostile_repo_paths_are_refused() {
    for line in [
        "git-receive-pack '../x'",
        "git-receive-pack '/a;b'",
        "git-receive-pack 'UPPER'",
        "git-receive-pack '/stacks/../../etc'",
        "git-receive-pack '$(reboot)'",
        "git-receive-pack",
    ] {
        assert!(parse_line(line).is_err(), "{line}");
    }
}

#[test]
fn commands_parse() {
    assert_eq!(cmd("apps --json"), Cmd::Apps { json: true });
    assert_eq!(
        cmd("ps:scale app web=3 worker=0"),
        Cmd::PsScale {
            app: "app".into(),
            scale: [("web".to_string(), 3), ("worker".to_string(), 0)].into()
        }
    );
    assert_eq!(
        cmd("config:set app 'GREETING=hello world' B=x=y"),
        Cmd::ConfigSet {
            app: "app".into(),
            vars: [
                ("GREETING".into(), "hello world".to_string()),
                ("B".into(), "x=y".to_string())
            ]
            .into()
        }
    );
    assert_eq!(
        cmd("logs app -n 5 -f --node web"),
        Cmd::Logs {
            app: "app".into(),
            lines: 5,
            follow: true,
            node: Some("web".into()),
            cron: None,
        }
    );
    assert_eq!(
        cmd("logs app --cron nightly"),
        Cmd::Logs {
            app: "app".into(),
            lines: 100,
            follow: false,
            node: None,
            cron: Some("nightly".into()),
        }
    );
    assert_eq!(
        cmd("rollback app v2"),
        Cmd::Rollback {
            app: "app".into(),
            release: Some(2)
        }
    );
    assert_eq!(cmd("ps --help"), Cmd::CommandHelp { name: "ps" });
    assert_eq!(
        cmd("apps:destroy a a"),
        Cmd::AppsDestroy { app: "a".into() }
    );
}

#[test]
fn errors_name_what_was_wrong() {
    assert_eq!(
        err("frobnicate"),
        "unknown command \"frobnicate\"; run `help` to see the commands"
    );
    assert_eq!(err("ps"), "ps: missing argument; usage: ps APP [--json]");
    assert_eq!(
        err("ps a b"),
        "ps: unexpected argument \"b\"; usage: ps APP [--json]"
    );
    assert_eq!(
        err("ps a --bogus"),
        "ps: unknown option --bogus; usage: ps APP [--json]"
    );
    assert!(err("ps:scale a web=two").contains("web: scale must be a whole number"));
    assert!(err("domains:add a 'x.com;include /etc/passwd'").starts_with("invalid domain"));
    assert!(err("config:set a lower=1").starts_with("invalid env key"));
    assert!(err("apps:destroy a").contains("confirm with"));
    assert_eq!(err(""), "no command given; run `help` to see the commands");
    assert_eq!(err("ps 'a"), "unbalanced quotes in the command line");
}

#[test]
fn certs_commands() {
    assert_eq!(
        cmd("certs shop --json"),
        Cmd::Certs {
            app: "shop".into(),
            json: true
        }
    );
    assert_eq!(
        cmd("certs:enable shop"),
        Cmd::CertsEnable { app: "shop".into() }
    );
    assert_eq!(
        cmd("certs:add shop"),
        Cmd::CertsAdd {
            app: "shop".into(),
            files: None
        }
    );
    assert_eq!(
        cmd("certs:add shop --cert /etc/ssl/shop.pem --key /etc/ssl/shop.key"),
        Cmd::CertsAdd {
            app: "shop".into(),
            files: Some(CertFiles {
                cert: "/etc/ssl/shop.pem".into(),
                key: "/etc/ssl/shop.key".into(),
            })
        }
    );
    assert!(
        err("certs:add shop --cert /etc/ssl/shop.pem")
            .starts_with("certs:add: --cert and --key go together")
    );
    assert!(err("certs:add shop --cert shop.pem --key /k").starts_with(
        "certs:add: --cert takes an absolute path on the Quarry host, found \"shop.pem\""
    ));
    assert_eq!(
        cmd("certs:renew shop --force"),
        Cmd::CertsRenew {
            app: "shop".into(),
            force: true
        }
    );
    assert_eq!(
        err("certs:add shop --cert a.pem"),
        "certs:add: --cert and --key go together; usage: certs:add APP < fullchain-and-key.pem  |  certs:add APP --cert FILE --key FILE"
    );
    assert_eq!(
        err("certs:disable"),
        "certs:disable: missing argument; usage: certs:disable APP"
    );
}

#[test]
fn every_spec_parses_its_help() {
    for s in SPECS {
        assert_eq!(
            cmd(&format!("{} --help", s.name)),
            Cmd::CommandHelp { name: s.name }
        );
    }
}

#[test]
fn every_command_in_the_table_has_help_and_a_unique_name() {
    for (i, s) in SPECS.iter().enumerate() {
        assert_eq!(
            cmd(&format!("{} --help", s.name)),
            Cmd::CommandHelp { name: s.name }
        );
        assert!(command_help(s).starts_with(&format!("Usage: {}", s.usage)));
        assert!(
            SPECS[i + 1..]
                .iter()
                .all(|o| o.name != s.name && o.id != s.id),
            "{} is in the table twice",
            s.name
        );
    }
}
