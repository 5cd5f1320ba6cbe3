//! More of the manifest tests: refusals, word for word, and the rest.

use super::*;

#[test]
fn bad_domain() {
    assert_eq!(
        refuse("nodes:\n  web:\n    domains:\n      - ok.example.com\n      - bad;example.com\n"),
        "quarry.yml:5: nodes.web.domains[1]: invalid domain \"bad;example.com\": use a host name such as www.example.com (letters, digits, '-' and '.', optionally starting with '*.')"
    );
}

#[test]
fn domain_listed_twice() {
    assert_eq!(
        refuse("nodes:\n  web:\n    domains: [a.example.com, a.example.com]\n"),
        "quarry.yml:3: nodes.web.domains[1]: a.example.com is listed twice"
    );
    assert_eq!(
        refuse(
            "nodes:\n  api:\n    type: web\n    domains: [a.example.com]\n  web:\n    domains:\n      - a.example.com\n"
        ),
        "quarry.yml:7: nodes.web.domains[0]: a.example.com is already a domain of node api"
    );
}

#[test]
fn web_only_keys_on_a_worker() {
    assert_eq!(
        refuse("nodes:\n  worker:\n    domains: [a.example.com]\n"),
        "quarry.yml:3: nodes.worker.domains: only a web node has domains"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    type: worker\n    healthcheck: {tcp: true}\n"),
        "quarry.yml:4: nodes.web.healthcheck: only a web node has a health check"
    );
}

#[test]
fn bad_volume() {
    assert_eq!(
        refuse("services:\n  db:\n    image: postgres\n    volumes: [data]\nnodes: {web: }\n"),
        "quarry.yml:4: services.db.volumes[0]: use an absolute path inside the container such as /data (not /, without '..', ':' or ','), found \"data\""
    );
    assert_eq!(
        refuse(
            "services:\n  db:\n    image: postgres\n    volumes:\n      - /data/../etc\nnodes: {web: }\n"
        ),
        "quarry.yml:5: services.db.volumes[0]: use an absolute path inside the container such as /data (not /, without '..', ':' or ','), found \"/data/../etc\""
    );
    assert_eq!(
        refuse(
            "services:\n  db:\n    image: postgres\n    volumes: [/data, /data]\nnodes: {web: }\n"
        ),
        "quarry.yml:4: services.db.volumes[1]: /data is listed twice"
    );
}

#[test]
fn image_and_build() {
    assert_eq!(
        refuse("services:\n  db:\n    image: postgres\n    build: db\nnodes: {web: }\n"),
        "quarry.yml:2: services.db: use either image or build, not both"
    );
    assert_eq!(
        refuse("services:\n  db:\n    port: 5432\nnodes: {web: }\n"),
        "quarry.yml:2: services.db: needs an image or a build directory"
    );
    assert_eq!(
        refuse("services:\n  db:\n    image: 'postgres; rm -rf /'\nnodes: {web: }\n"),
        "quarry.yml:3: services.db.image: invalid image \"postgres; rm -rf /\": use a name such as redis:7 (letters, digits, '.', '_', '-', '/', ':' and '@')"
    );
}

#[test]
fn build_dir_outside_the_repository() {
    assert_eq!(
        refuse("services:\n  db:\n    build: ../other\nnodes: {web: }\n"),
        "quarry.yml:3: services.db.build: use a directory inside the repository, such as services/cache (relative, without '..'), found \"../other\""
    );
    assert_eq!(
        refuse("services:\n  db:\n    build: /srv\nnodes: {web: }\n"),
        "quarry.yml:3: services.db.build: use a directory inside the repository, such as services/cache (relative, without '..'), found \"/srv\""
    );
}

#[test]
fn bad_buildpack() {
    assert_eq!(
        refuse("build: {buildpack: --upload-pack=x}\nnodes: {web: }\n"),
        "quarry.yml:1: build.buildpack: use a built-in buildpack name, a path or a git URL, without spaces or a leading '-', found \"--upload-pack=x\""
    );
}

#[test]
fn empty_command() {
    assert_eq!(
        refuse("nodes:\n  web:\n    command: '  '\n"),
        "quarry.yml:3: nodes.web.command: the command is empty"
    );
    assert_eq!(
        refuse("release: []\nnodes: {web: }\n"),
        "quarry.yml:1: release: the command is empty"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    command: ['', x]\n"),
        "quarry.yml:3: nodes.web.command[0]: the program name is empty"
    );
}

#[test]
fn command_of_the_wrong_type() {
    assert_eq!(
        refuse("nodes:\n  web:\n    command: {run: x}\n"),
        "quarry.yml:3: nodes.web.command: expected a string or a list, found a mapping"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    command: [run, [x]]\n"),
        "quarry.yml:3: nodes.web.command[1]: expected a string, found a list"
    );
}

#[test]
fn healthcheck_path() {
    assert_eq!(
        refuse("nodes:\n  web:\n    healthcheck:\n      path: health\n"),
        "quarry.yml:4: nodes.web.healthcheck.path: must start with '/', found \"health\""
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    healthcheck:\n      path: /a b\n"),
        "quarry.yml:4: nodes.web.healthcheck.path: use at most 1024 printable characters without spaces, found \"/a b\""
    );
}

#[test]
fn healthcheck_path_and_tcp() {
    assert_eq!(
        refuse("nodes:\n  web:\n    healthcheck: {path: /health, tcp: true}\n"),
        "quarry.yml:3: nodes.web.healthcheck: use either path or tcp: true, not both"
    );
}

#[test]
fn bad_placement_label() {
    assert_eq!(
        refuse("nodes:\n  web:\n    placement:\n      labels: {Region: eu}\n"),
        "quarry.yml:4: nodes.web.placement.labels.Region: invalid label key \"Region\": use 1-63 lower-case letters, digits, '.', '_', '/' and '-', starting with a letter or digit"
    );
    assert_eq!(
        refuse("nodes:\n  web:\n    placement:\n      labels: {region: 'eu west'}\n"),
        "quarry.yml:4: nodes.web.placement.labels.region: invalid label value \"eu west\": use at most 63 letters, digits, '.', '_' and '-'"
    );
}

#[test]
fn no_nodes() {
    assert_eq!(refuse(""), "quarry.yml: nodes: at least one node is needed");
    assert_eq!(
        refuse("# nothing yet\n"),
        "quarry.yml: nodes: at least one node is needed"
    );
    assert_eq!(
        refuse("services:\n  cache: {image: redis}\nnodes: {}\n"),
        "quarry.yml:3: nodes: at least one node is needed"
    );
}

#[test]
fn too_large() {
    let text = format!("nodes: {{web: }}\n#{}\n", "x".repeat(MAX_MANIFEST_LEN));
    assert_eq!(refuse(&text), "quarry.yml: larger than 1 MiB");
}

#[test]
fn the_file_name_is_the_callers() {
    let e = parse_manifest("app/quarry.yaml", "nodes: 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "app/quarry.yaml:1: nodes: expected a mapping, found 1"
    );
    assert_eq!(
        (e.file.as_str(), e.line, e.path.as_str()),
        ("app/quarry.yaml", Some(1), "nodes")
    );
}

// Procfile

fn procfile_error(text: &str) -> String {
    parse_procfile("Procfile", text).unwrap_err().to_string()
}

#[test]
fn procfile_gives_one_node_per_line() {
    let m = parse_procfile(
        "Procfile",
        "# processes\n\nweb: bundle exec puma -p $PORT\r\nworker:bin/worker --queue=a:b\n  \nrelease: ./migrate\n",
    )
    .unwrap();
    assert_eq!(m.nodes.len(), 2);
    let web = &m.nodes["web"];
    assert_eq!((web.kind, web.scale), (NodeKind::Web, 1));
    assert_eq!(
        web.command,
        Some(Command::Shell("bundle exec puma -p $PORT".into()))
    );
    let worker = &m.nodes["worker"];
    assert_eq!((worker.kind, worker.scale), (NodeKind::Worker, 1));
    assert_eq!(
        worker.command,
        Some(Command::Shell("bin/worker --queue=a:b".into()))
    );
    assert_eq!(m.release, Some(Command::Shell("./migrate".into())));
    assert_eq!(m.deploy, Deploy::default());
}

#[test]
fn procfile_line_without_colon() {
    assert_eq!(
        procfile_error("web: ./server\nworker ./worker\n"),
        "Procfile:2: expected `name: command`, found \"worker ./worker\""
    );
}

#[test]
fn procfile_bad_name() {
    assert_eq!(
        procfile_error("\nWeb_1: ./server\n"),
        "Procfile:2: invalid process name \"Web_1\": use 1-30 lower-case letters, digits and '-', starting with a letter or digit"
    );
}

#[test]
fn procfile_duplicate_process() {
    assert_eq!(
        procfile_error("web: a\n# again\nweb: b\n"),
        "Procfile:3: web: duplicate process (first on line 1)"
    );
}

#[test]
fn procfile_empty_command() {
    assert_eq!(
        procfile_error("web: ./server\nworker:\n"),
        "Procfile:2: worker: the command is empty"
    );
}

#[test]
fn procfile_without_processes() {
    assert_eq!(
        procfile_error("# nothing\nrelease: ./migrate\n"),
        "Procfile: at least one process is needed"
    );
    let big = "#".repeat(MAX_MANIFEST_LEN + 1);
    assert_eq!(procfile_error(&big), "Procfile: larger than 1 MiB");
}

#[test]
fn merge_keys_are_refused() {
    assert_eq!(
        refuse("env: &shared {A: '1'}\nnodes:\n  web:\n    env:\n      <<: *shared\n"),
        "quarry.yml:5: nodes.web.env.\"<<\": merge keys (<<) are not supported"
    );
}
