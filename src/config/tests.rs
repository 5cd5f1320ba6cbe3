//! config.yml read from text: what each section gives, and every refusal
//! pinned word for word with its line and key path.

use std::path::PathBuf;

use super::{Config, ConfigError, GridConfig, ProviderConfig};

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn empty_and_comments_only_are_the_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    assert_eq!(Config::parse("# nothing yet\n").unwrap(), Config::default());
    assert_eq!(Config::parse("grid:\ntls: ~\n").unwrap(), Config::default());
}

#[test]
fn every_section_is_read() {
    let c = Config::parse(
        "grid: {autosize: true, min: 0, max: 4, idle: 30}\n\
         provider:\n  kind: exec\n  command: /opt/p\n  args: [--zone, 3]\n  timeout: 20\n  provision: [base, docker-tuning]\n\
         network:\n  pool: 10.9.0.0/16\n  prefix: 24\n  lockdown: true\n  allow: [192.0.2.1]\n\
         tls:\n  auto: true\n",
    )
    .unwrap();
    assert_eq!(
        c.grid,
        GridConfig {
            autosize: true,
            min: 0,
            max: Some(4),
            idle: 30
        }
    );
    assert_eq!(
        c.provider,
        ProviderConfig::Exec {
            command: PathBuf::from("/opt/p"),
            args: vec!["--zone".into(), "3".into()],
            timeout: Some(20),
            provision: vec!["base".into(), "docker-tuning".into()],
        }
    );
    assert_eq!(
        (
            c.network.pool.as_str(),
            c.network.prefix,
            c.network.lockdown
        ),
        ("10.9.0.0/16", 24, true)
    );
    assert_eq!(c.network.allow, ["192.0.2.1"]);
    assert!(c.tls.auto && c.tls.redirect);
    let c = Config::parse("provider:\n  kind: static\n").unwrap();
    assert_eq!(c.provider, ProviderConfig::Static);
}

#[test]
fn refusals_name_the_line_and_the_key_path() {
    for (text, message) in [
        (
            "grid:\n  autosise: true\n",
            "config.yml:2: grid.autosise: unknown field, expected one of autosize, min, max, idle",
        ),
        (
            "grids: {}\n",
            "config.yml:1: grids: unknown field, expected one of grid, provider, tls, network",
        ),
        (
            "grid:\n  min: many\n",
            "config.yml:2: grid.min: expected an integer, found \"many\"",
        ),
        (
            "grid:\n  max: 20000\n",
            "config.yml:2: grid.max: expected an integer from 0 to 10000, found 20000",
        ),
        (
            "grid:\n  autosize: yes\n",
            "config.yml:2: grid.autosize: expected true or false, found \"yes\"",
        ),
        (
            "grid: [1]\n",
            "config.yml:1: grid: expected a mapping, found a list",
        ),
        (
            "provider:\n  kind: aws\n",
            "config.yml:2: provider.kind: expected static or exec, found \"aws\"",
        ),
        (
            "provider:\n  command: /opt/p\n",
            "config.yml:1: provider: expected kind: static or exec",
        ),
        (
            "provider:\n  kind: exec\n",
            "config.yml:1: provider: kind: exec needs command: the provider program's path",
        ),
        (
            "provider:\n  kind: exec\n  command: p\n",
            "config.yml:3: provider.command: use an absolute path, found p",
        ),
        (
            "provider:\n  kind: static\n  args: [a]\n",
            "config.yml:3: provider.args: only for kind: exec",
        ),
        (
            "provider:\n  kind: exec\n  command: /p\n  timeout: 0\n",
            "config.yml:4: provider.timeout: expected an integer from 1 to 86400, found 0",
        ),
        (
            "network:\n  lockdwn: true\n",
            "config.yml:2: network.lockdwn: unknown field, expected one of pool, prefix, lockdown, allow",
        ),
        (
            "network:\n  allow: 10.0.0.0/8\n",
            "config.yml:2: network.allow: expected a list, found \"10.0.0.0/8\"",
        ),
        (
            "network:\n  prefix: 40\n",
            "config.yml:2: network.prefix: expected an integer from 0 to 32, found 40",
        ),
        (
            "grid:\n  min: 1\ngrid:\n  min: 2\n",
            "config.yml:3: grid: duplicate key (first on line 1)",
        ),
        (
            "grid: {min: 1\n",
            "config.yml:1: invalid YAML: unclosed bracket '{'",
        ),
        (
            "grid: &g {min: 1}\ntls: !!map {}\n",
            "config.yml:2: tls: the tag !!map is not supported (only !!str is)",
        ),
    ] {
        assert_eq!(err(text), message, "{text:?}");
    }
}

#[test]
fn checks_across_keys_name_the_keys() {
    assert_eq!(
        err("grid:\n  max: 1\n  min: 2\n"),
        "config.yml: grid.max (1) is below grid.min (2)"
    );
    assert_eq!(
        err("grid:\n  autosize: true\n"),
        "config.yml: grid.autosize needs grid.max: the most servers the provider may add"
    );
    assert_eq!(
        err("network:\n  prefix: 8\n"),
        "config.yml: network.prefix: use a length from 16 to 29, found 8"
    );
    assert!(matches!(
        Config::parse("network:\n  prefix: 8\n"),
        Err(ConfigError::Network(_))
    ));
}

#[test]
fn an_unreadable_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    assert_eq!(Config::load(&store).unwrap(), Config::default());
    std::fs::create_dir(dir.path().join("config.yml")).unwrap();
    let e = Config::load(&store).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", dir.path().join("config.yml").display())),
        "{e}"
    );
}
