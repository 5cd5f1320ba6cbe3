//! Good manifests read in full; one test per class of error, word for word.

use super::*;

fn read(text: &str) -> Manifest {
    parse_manifest("quarry.yml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn refuse(text: &str) -> String {
    match parse_manifest("quarry.yml", text) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const DESIGN_EXAMPLE: &str = "\
env:                        # injected into every node container
  GREETING: hello
services:                   # started once (ENSURE), never restarted by a push
  cache:
    image: redis:7          # an image present on the host, or `build: dir`
    port: 6379
    volumes: [/data]        # persistent; kept across restarts and deploys
nodes:                      # rebuilt and restarted on every push
  web:
    type: web               # routed by domain, load-balanced, health-checked
    command: ./server       # runs with PORT set; listens on $PORT
    scale: 2
    memory: 256             # MiB: the slice size on the grid
    domains: [www.example.com]    # besides <app>.<root domain>
    healthcheck: { path: /health, timeout: 30 }
  worker:
    type: worker
    command: ./worker
";

#[test]
fn the_design_example() {
    let m = read(DESIGN_EXAMPLE);
    assert_eq!(m.env, strings(&[("GREETING", "hello")]));
    assert_eq!(
        m.services["cache"],
        Service {
            source: ServiceSource::Image("redis:7".into()),
            port: Some(6379),
            volumes: vec!["/data".into()],
            command: None,
            env: BTreeMap::new(),
            memory: None,
            placement: Placement::default(),
        }
    );
    let web = &m.nodes["web"];
    assert_eq!(web.kind, NodeKind::Web);
    assert_eq!(web.command, Some(Command::Shell("./server".into())));
    assert_eq!((web.scale, web.memory), (2, Some(256)));
    assert_eq!(web.domains, ["www.example.com"]);
    assert_eq!(
        web.healthcheck,
        Some(HealthCheck {
            path: Some("/health".into()),
            tcp: false,
            timeout: 30,
            interval: 1,
            attempts: None,
        })
    );
    let worker = &m.nodes["worker"];
    assert_eq!(worker.kind, NodeKind::Worker);
    assert_eq!(worker.command, Some(Command::Shell("./worker".into())));
    assert_eq!(worker.scale, 1);
    assert_eq!(m.release, None);
    assert_eq!(
        m.deploy,
        Deploy {
            batch: None,
            drain: 10
        }
    );
    assert_eq!(m.releases, Releases { keep: 5 });
}

#[test]
fn a_minimal_manifest_takes_every_default() {
    let m = read("nodes:\n  web:\n  clock:\n");
    assert_eq!(m.nodes["web"], Node::new(NodeKind::Web));
    assert_eq!(m.nodes["clock"], Node::new(NodeKind::Worker));
    assert!(m.env.is_empty() && m.services.is_empty());
    assert_eq!(m.build, Build::default());
}

#[test]
fn commands_are_strings_or_lists() {
    let m = read(
        "release: [./migrate, --yes]\n\
         services:\n  db:\n    build: services/db\n    command: [postgres, -p, 5432]\n\
         nodes:\n  web:\n    command: 'exec ./server --port \"$PORT\"'\n  \
         worker:\n    command:\n      - sleep\n      - 10\n",
    );
    let exec = |args: &[&str]| Some(Command::Exec(args.iter().map(|s| s.to_string()).collect()));
    assert_eq!(m.release, exec(&["./migrate", "--yes"]));
    assert_eq!(
        m.services["db"].source,
        ServiceSource::Build("services/db".into())
    );
    assert_eq!(m.services["db"].command, exec(&["postgres", "-p", "5432"]));
    assert_eq!(
        m.nodes["web"].command,
        Some(Command::Shell("exec ./server --port \"$PORT\"".into()))
    );
    assert_eq!(m.nodes["worker"].command, exec(&["sleep", "10"]));
}

#[test]
fn env_numbers_and_booleans_keep_their_text() {
    let m = read(
        "env:\n  PORT: 80\n  DEBUG: true\n  RATIO: 1.50\n  ZIP: '007'\n  EMPTY: ''\n\
         nodes:\n  web:\n    env: {WORKERS: 4, GREETING: hi}\n",
    );
    assert_eq!(
        m.env,
        strings(&[
            ("PORT", "80"),
            ("DEBUG", "true"),
            ("RATIO", "1.50"),
            ("ZIP", "007"),
            ("EMPTY", "")
        ])
    );
    assert_eq!(
        m.nodes["web"].env,
        strings(&[("WORKERS", "4"), ("GREETING", "hi")])
    );
}

#[test]
fn every_section_at_once() {
    let m = read(
        "build: { buildpack: https://github.com/heroku/heroku-buildpack-go.git }\n\
         deploy: { batch: 1, drain: 0 }\n\
         releases: { keep: 3 }\n\
         services:\n  db:\n    image: postgres:16\n    memory: 512\n    env: { POSTGRES_PASSWORD: x }\n\
         nodes:\n  api:\n    type: web\n    scale: 0\n    domains: [api.example.com, '*.api.example.com']\n    \
         healthcheck: { tcp: true, interval: 2, attempts: 5 }\n    placement: { labels: { region: eu, disk: 100 } }\n",
    );
    assert_eq!(
        m.build.buildpack.as_deref(),
        Some("https://github.com/heroku/heroku-buildpack-go.git")
    );
    assert_eq!(
        m.deploy,
        Deploy {
            batch: Some(1),
            drain: 0
        }
    );
    assert_eq!(m.releases.keep, 3);
    assert_eq!(m.services["db"].memory, Some(512));
    let api = &m.nodes["api"];
    assert_eq!((api.kind, api.scale), (NodeKind::Web, 0));
    assert_eq!(api.domains, ["api.example.com", "*.api.example.com"]);
    let check = api.healthcheck.as_ref().unwrap();
    assert!(check.tcp && check.path.is_none());
    assert_eq!(
        (check.timeout, check.interval, check.attempts),
        (60, 2, Some(5))
    );
    assert_eq!(
        api.placement.labels,
        strings(&[("region", "eu"), ("disk", "100")])
    );
}

#[test]
fn anchors_and_aliases_are_read() {
    let m = read("env: &shared\n  A: '1'\nnodes:\n  web:\n    env: *shared\n");
    assert_eq!(m.nodes["web"].env, m.env);
}

#[test]
fn manifests_round_trip_through_json() {
    let m = read(DESIGN_EXAMPLE);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
}

#[test]
fn default_manifest_is_one_web_node() {
    let m = default_manifest();
    assert_eq!(m.nodes.len(), 1);
    assert_eq!(m.nodes["web"], Node::new(NodeKind::Web));
    assert_eq!(m.nodes["web"].command, None);
}

// One test per class of error.

#[test]
fn error_display_without_line_or_path() {
    let e = ManifestError::new(None, "", "larger than 1 MiB").in_file("quarry.yml");
    assert_eq!(e.to_string(), "quarry.yml: larger than 1 MiB");
    let e = ManifestError::new(Some(3), "", "x").in_file("quarry.yml");
    assert_eq!(e.to_string(), "quarry.yml:3: x");
}

#[test]
fn invalid_yaml() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: [1\n"),
        "quarry.yml:3: invalid YAML: unclosed bracket '['"
    );
    assert_eq!(
        refuse("nodes: : :\n"),
        "quarry.yml:1: invalid YAML: mapping values are not allowed in this context"
    );
}

#[test]
fn a_second_document() {
    assert_eq!(
        refuse("nodes: {web: }\n---\nnodes: {}\n"),
        "quarry.yml:2: invalid YAML: a second document (---) is not allowed here"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: 1\n  web:\n    scale: 2\n"),
        "quarry.yml:4: nodes.web: duplicate key (first on line 2)"
    );
}

#[test]
fn unknown_field() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scael: 2\n"),
        "quarry.yml:3: nodes.web.scael: unknown field, expected one of type, command, scale, memory, domains, healthcheck, env, placement"
    );
    assert_eq!(
        refuse("nodes: {web: }\nplacement: {}\n"),
        "quarry.yml:2: placement: unknown field, expected one of env, services, nodes, release, build, deploy, releases, cron"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    placement: {label: {}}\n"),
        "quarry.yml:3: nodes.web.placement.label: unknown field, expected labels"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: two\n"),
        "quarry.yml:3: nodes.web.scale: expected an integer, found \"two\""
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: 1.5\n"),
        "quarry.yml:3: nodes.web.scale: expected an integer, found 1.5"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    domains: www.example.com\n"),
        "quarry.yml:3: nodes.web.domains: expected a list, found \"www.example.com\""
    );
    assert_eq!(
        refuse("nodes: [web]\n"),
        "quarry.yml:1: nodes: expected a mapping, found a list"
    );
    assert_eq!(
        refuse("- web\n"),
        "quarry.yml:1: expected a mapping, found a list"
    );
    assert_eq!(
        refuse("services:\n  db:\n    image: 7\nnodes: {web: }\n"),
        "quarry.yml:3: services.db.image: expected a string, found 7"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    healthcheck:\n      tcp: yes\n"),
        "quarry.yml:4: nodes.web.healthcheck.tcp: expected true or false, found \"yes\""
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    type: api\n"),
        "quarry.yml:3: nodes.web.type: expected web or worker, found \"api\""
    );
}

#[test]
fn unsupported_tag() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: !!int 2\n"),
        "quarry.yml:3: nodes.web.scale: the tag !!int is not supported (only !!str is)"
    );
}

#[test]
fn scale_out_of_range() {
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: 101\n"),
        "quarry.yml:3: nodes.web.scale: expected an integer from 0 to 100, found 101"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    scale: -1\n"),
        "quarry.yml:3: nodes.web.scale: expected an integer from 0 to 100, found -1"
    );
}

#[test]
fn memory_out_of_range() {
    assert_eq!(
        refuse("nodes:\n  web:\n    memory: 2\n"),
        "quarry.yml:3: nodes.web.memory: expected an integer from 4 to 1048576, found 2"
    );
}

#[test]
fn port_out_of_range() {
    assert_eq!(
        refuse("services:\n  db:\n    image: postgres\n    port: 65536\nnodes: {web: }\n"),
        "quarry.yml:4: services.db.port: expected an integer from 1 to 65535, found 65536"
    );
}

#[test]
fn other_numbers_out_of_range() {
    assert_eq!(
        refuse("deploy: {batch: 0}\nnodes: {web: }\n"),
        "quarry.yml:1: deploy.batch: expected an integer from 1 to 100, found 0"
    );
    assert_eq!(
        refuse("releases:\n  keep: 0\nnodes: {web: }\n"),
        "quarry.yml:2: releases.keep: expected an integer from 1 to 1000, found 0"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    healthcheck: {timeout: 0}\n"),
        "quarry.yml:3: nodes.web.healthcheck.timeout: expected an integer from 1 to 3600, found 0"
    );
}

#[test]
fn bad_node_name() {
    assert_eq!(
        refuse("nodes:\n  Web: {}\n"),
        "quarry.yml:2: nodes.Web: invalid node name \"Web\": use 1-30 lower-case letters, digits and '-', starting with a letter or digit"
    );
}

#[test]
fn bad_service_name() {
    assert_eq!(
        refuse("services:\n  my_db: {image: postgres}\nnodes: {web: }\n"),
        "quarry.yml:2: services.my_db: invalid service name \"my_db\": use 1-30 lower-case letters, digits and '-', starting with a letter or digit"
    );
}

#[test]
fn a_name_for_both_a_service_and_a_node() {
    assert_eq!(
        refuse("services:\n  cache: {image: redis}\nnodes:\n  web:\n  cache:\n"),
        "quarry.yml:5: nodes.cache: cache is already the name of a service"
    );
}

#[test]
fn release_is_no_node_name() {
    assert_eq!(
        refuse("nodes:\n  release: {command: ./migrate}\n"),
        "quarry.yml:2: nodes.release: release is kept for the release command, use another name"
    );
}

#[test]
fn bad_env_key() {
    assert_eq!(
        refuse("nodes:\n  web:\n    env:\n      port: 80\n"),
        "quarry.yml:4: nodes.web.env.port: invalid env key \"port\": use upper-case letters, digits and '_', not starting with a digit"
    );
}

#[test]
fn bad_env_value() {
    assert_eq!(
        refuse("env:\n  A: \"x\\0y\"\nnodes: {web: }\n"),
        "quarry.yml:2: env.A: invalid env value \"x\\0y\": contains a NUL byte"
    );
    assert_eq!(
        refuse("env:\n  A:\nnodes: {web: }\n"),
        "quarry.yml:2: env.A: expected a string, found null"
    );
    assert_eq!(
        refuse("env:\n  A: [1]\nnodes: {web: }\n"),
        "quarry.yml:2: env.A: expected a string, found a list"
    );
}

mod refusals;
