//! app.json: parsing (errors pinned word for word, unknown keys as notes)
//! and the first-deploy plans.

use std::collections::BTreeMap;

use super::*;

const FULL: &str = r#"{
  "name": "demo",
  "description": "a demo",
  "keywords": ["node"],
  "env": {
    "SECRET_KEY": { "description": "signing", "generator": "secret" },
    "GREETING": { "value": "hello", "required": false },
    "SHORT": "plain",
    "API_TOKEN": { "description": "from the provider" },
    "OPTIONAL": { "required": false, "hint": 1 }
  },
  "formation": { "web": { "quantity": 1, "size": "standard-1x" }, "worker": { "quantity": 2 } },
  "scripts": { "postdeploy": "node seed.js", "pr-predestroy": "x" },
  "addons": ["heroku-postgresql"],
  "colour": "blue"
}"#;

#[test]
fn a_full_app_json_is_read_with_notes_for_what_is_not_used() {
    let a = parse(FULL).unwrap();
    assert_eq!(
        a.env["SECRET_KEY"],
        EnvVar {
            value: None,
            secret: true,
            required: true
        }
    );
    assert_eq!(a.env["GREETING"].value.as_deref(), Some("hello"));
    assert!(!a.env["GREETING"].required);
    assert_eq!(a.env["SHORT"].value.as_deref(), Some("plain"));
    assert!(a.env["API_TOKEN"].required, "Heroku's default");
    assert_eq!(
        a.formation,
        BTreeMap::from([("web".into(), 1), ("worker".into(), 2)])
    );
    assert_eq!(a.postdeploy.as_deref(), Some("node seed.js"));
    assert_eq!(
        a.notes,
        [
            "app.json: addons: not used by Quarry (ignored)",
            "app.json: colour: unknown key (ignored)",
            "app.json: env.OPTIONAL.hint: unknown key (ignored)",
            "app.json: formation.web.size: ignored (a node's size is its quarry.yml memory)",
            "app.json: scripts.pr-predestroy: not used by Quarry (ignored)",
        ]
    );
}

#[test]
fn postdeploy_may_be_an_object_with_a_command() {
    let a = parse(r#"{"scripts":{"postdeploy":{"command":"./seed","size":"basic"}}}"#).unwrap();
    assert_eq!(a.postdeploy.as_deref(), Some("./seed"));
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_key_path_and_the_reason() {
    assert_eq!(
        err("{\n  \"env\": {\n    \"A\": 1,\n  }\n}"),
        "app.json:4: not valid JSON: trailing comma"
    );
    assert_eq!(err("[]"), "app.json: (top level): expected an object");
    assert_eq!(
        err(r#"{"env": []}"#),
        "app.json: env: expected an object, found a list"
    );
    assert_eq!(
        err(r#"{"env": {"A": 1}}"#),
        "app.json: env.A: expected a string or an object, found a number"
    );
    assert_eq!(
        err(r#"{"env": {"lower": "x"}}"#),
        "app.json: env.lower: invalid env key \"lower\": use upper-case letters, digits and '_', not starting with a digit"
    );
    assert_eq!(
        err(r#"{"env": {"A": {"generator": "uuid"}}}"#),
        "app.json: env.A.generator: unknown generator \"uuid\" (the only one is \"secret\")"
    );
    assert_eq!(
        err(r#"{"env": {"A": {"required": "yes"}}}"#),
        "app.json: env.A.required: expected true or false, found a string"
    );
    assert_eq!(
        err(r#"{"env": {"A": {"value": 3}}}"#),
        "app.json: env.A.value: expected a string, found a number"
    );
    assert_eq!(
        err(r#"{"formation": {"worker": {"quantity": -1}}}"#),
        "app.json: formation.worker.quantity: expected a whole number from 0 to 100"
    );
    assert_eq!(
        err(r#"{"formation": {"Bad Name": {"quantity": 1}}}"#)
            .split(':')
            .nth(1),
        Some(" formation.Bad Name")
    );
    assert_eq!(
        err(r#"{"scripts": {"postdeploy": ""}}"#),
        "app.json: scripts.postdeploy: expected a one-line command"
    );
}

#[test]
fn the_first_deploy_sets_defaults_and_secrets_and_refuses_a_missing_required_key() {
    let a = parse(FULL).unwrap();
    // API_TOKEN is required and has no value: refused while unset.
    let refused = env_plan("demo", &a, |_| false, || "s".into()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "app.json: env.API_TOKEN: required and not set; set it with `config:set demo API_TOKEN=…` and push again"
    );
    // Once it is set (config:set), the others are planned; set keys are kept.
    let set = ["API_TOKEN", "SHORT"];
    let plan = env_plan("demo", &a, |k| set.contains(&k), || "0f".repeat(32)).unwrap();
    assert_eq!(
        plan,
        [
            ("GREETING".into(), "hello".into(), Origin::Default),
            ("SECRET_KEY".into(), "0f".repeat(32), Origin::Secret),
        ]
    );
    // A secret already set is never made again.
    let set = ["API_TOKEN", "SECRET_KEY"];
    let plan = env_plan("demo", &a, |k| set.contains(&k), || panic!("no new secret")).unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
}

#[test]
fn the_formation_applies_only_when_none_was_set() {
    let a = parse(FULL).unwrap();
    assert_eq!(
        formation_plan(&a, &BTreeMap::new()),
        Some(BTreeMap::from([("web".into(), 1), ("worker".into(), 2)]))
    );
    let scaled = BTreeMap::from([("web".to_owned(), 3)]);
    assert_eq!(formation_plan(&a, &scaled), None);
    assert_eq!(formation_plan(&AppJson::default(), &BTreeMap::new()), None);
}

#[test]
fn secrets_are_64_hex_digits_and_differ() {
    let (a, b) = (new_secret(), new_secret());
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);
}

#[test]
fn app_json_is_read_as_a_regular_file_never_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let src = store.app_dir("demo").join("src");
    std::fs::create_dir_all(&src).unwrap();
    assert_eq!(first::read(&store, "demo"), Ok(None));
    std::fs::write(src.join("secret.json"), r#"{"env":{"A":"x"}}"#).unwrap();
    std::os::unix::fs::symlink("secret.json", src.join(FILE)).unwrap();
    assert_eq!(
        first::read(&store, "demo").unwrap_err().to_string(),
        "app.json is a symlink, which is not followed"
    );
    std::fs::remove_file(src.join(FILE)).unwrap();
    std::fs::write(src.join(FILE), vec![b' '; MAX_LEN as usize + 1]).unwrap();
    assert_eq!(
        first::read(&store, "demo").unwrap_err().to_string(),
        "app.json is larger than 262144 bytes"
    );
    std::fs::write(src.join(FILE), r#"{"env":{"A":"x"}}"#).unwrap();
    let read = first::read(&store, "demo").unwrap().unwrap();
    assert_eq!(read.env["A"].value.as_deref(), Some("x"));
}
