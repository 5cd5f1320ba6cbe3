//! Whole stacks from quarry.yml: services, web and worker nodes, scaling,
//! config, domains and manifest errors — on the real engine and nginx.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Repo, Server, stderr, wait_for};

/// `key=value` fields of the fixture's answer.
fn field(body: &str, key: &str) -> String {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

fn service_id(server: &Server, app: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", &format!("{app}.cache")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no service container: {}",
        stderr(&out)
    );
    let _ = server;
    common::stdout(&out).trim().to_string()
}

fn web_count(server: &Server, app: &str) -> usize {
    server
        .containers(Some(app))
        .iter()
        .filter(|c| c.0.starts_with(&format!("{app}.web.")))
        .count()
}

/// Distinct hosts answering through nginx within a bounded number of requests.
fn hosts_seen(server: &Server, app: &str, want: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        seen.insert(field(&server.body(app), "host"));
        if seen.len() >= want {
            break;
        }
    }
    seen
}

#[test]
fn a_stack_deploys_scales_reconfigures_and_keeps_its_service() {
    let server = Server::start();
    let app = common::unique_app("stack");
    let repo = Repo::fixture("stack");

    let log = server.push_ok(repo.path(), &app);
    assert!(
        log.contains("ENSURE cache"),
        "the plan is printed before it runs:\n{log}"
    );
    assert!(log.contains("DEPLOY web v1 x2"), "{log}");
    let body = server.body(&app);
    assert_eq!(field(&body, "greeting"), "hello", "{body}");
    assert_eq!(field(&body, "cache"), format!("cache.{app}:7000"), "{body}");
    let born = field(&body, "born");
    assert!(
        !born.is_empty(),
        "the web container reached the service: {body}"
    );
    let names: Vec<String> = server
        .containers(Some(&app))
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        field(&body, "pong"),
        "pong",
        "a service built from the repo answers: {body}"
    );
    for want in ["cache", "echo", "web.1", "web.2", "worker.1"] {
        assert!(
            names.contains(&format!("{app}.{want}")),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(names.len(), 5, "{names:?}");
    let cache_id = service_id(&server, &app);
    let plan_file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.data.join(format!("stacks/{app}/build/plan.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(plan_file[0]["op"], "ENSURE");

    // Scale up: three containers, all behind nginx.
    server.admin(&format!("ps:scale {app} web=3"));
    assert_eq!(web_count(&server, &app), 3);
    assert_eq!(
        hosts_seen(&server, &app, 3).len(),
        3,
        "nginx balances across all three"
    );
    // In sync: the dry run has nothing to do.
    assert_eq!(server.admin(&format!("plan {app}")), "nothing to do\n");
    server.admin(&format!("ps:scale {app} web=1"));
    assert_eq!(web_count(&server, &app), 1);
    assert_eq!(hosts_seen(&server, &app, 2).len(), 1);
    let out = server.ssh(&server.admin, &format!("ps:scale {app} nosuch=2"));
    assert!(
        !out.status.success() && stderr(&out).contains("has no node nosuch"),
        "{}",
        stderr(&out)
    );

    // Config vars win over quarry.yml's env.
    server.admin(&format!("config:set {app} GREETING=bye"));
    assert_eq!(field(&server.body(&app), "greeting"), "bye");
    assert_eq!(
        web_count(&server, &app),
        1,
        "the formation survives a new release"
    );

    // Domains.
    let domain = format!("www.{app}.example");
    server.admin(&format!("domains:add {app} {domain}"));
    let (status, body) = server.get(&domain, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(field(&body, "greeting"), "bye");
    assert!(server.admin(&format!("domains {app}")).contains(&domain));
    let out = server.ssh(
        &server.admin,
        &format!("domains:add {app} 'x.com;include /etc/passwd'"),
    );
    assert!(!out.status.success() && stderr(&out).contains("invalid domain"));
    server.admin(&format!("domains:remove {app} {domain}"));
    assert_eq!(server.get(&domain, "/").0, 404);

    // A bad quarry.yml is rejected with its line and key; the release keeps serving.
    repo.replace_with("stack-bad-manifest");
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("quarry.yml:18: nodes.web.scale: expected an integer, found \"two\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(field(&server.body(&app), "greeting"), "bye");

    // A redeploy keeps the service container and its data.
    repo.replace_with("stack");
    repo.write(
        "web.sh",
        &std::fs::read_to_string(repo.path().join("web.sh"))
            .unwrap()
            .replace("greeting=", "v=2 greeting="),
    );
    repo.commit("v2");
    let log = server.push_ok(repo.path(), &app);
    assert!(
        !log.contains("ENSURE cache"),
        "an unchanged service is not touched:\n{log}"
    );
    let body = server.body(&app);
    assert_eq!(field(&body, "v"), "2", "{body}");
    assert_eq!(field(&body, "born"), born);
    assert_eq!(
        service_id(&server, &app),
        cache_id,
        "same service container"
    );

    // Changing the service's definition restarts it; its volume keeps the data.
    let yml = std::fs::read_to_string(repo.path().join("quarry.yml")).unwrap();
    repo.write(
        "quarry.yml",
        &yml.replace(
            "    port: 7000\n",
            "    port: 7000\n    env: { TOUCHED: \"1\" }\n",
        ),
    );
    repo.commit("service changed");
    server.push_ok(repo.path(), &app);
    assert_ne!(
        service_id(&server, &app),
        cache_id,
        "a changed service is restarted"
    );
    assert_eq!(
        field(&server.body(&app), "born"),
        born,
        "the volume survived the restart"
    );

    // The memory limit is a hard container limit.
    let mem = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}}",
            &format!("{app}.web.1"),
        ])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&mem).trim(), (64 * 1024 * 1024).to_string());

    // Removing the service stops it but keeps its data until asked.
    let yml = std::fs::read_to_string(repo.path().join("quarry.yml")).unwrap();
    let start = yml.find("services:").unwrap();
    let end = yml.find("nodes:").unwrap();
    repo.write("quarry.yml", &format!("{}{}", &yml[..start], &yml[end..]));
    repo.commit("no more cache");
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains(&format!("KILL {app}.cache")), "{log}");
    assert!(
        !server
            .containers(Some(&app))
            .iter()
            .any(|c| c.0 == format!("{app}.cache"))
    );
    let ps = server.admin(&format!("ps {app}"));
    assert!(
        ps.contains(&format!("volume quarry.{app}.cache.1 kept")),
        "{ps}"
    );
    let out = server.ssh(&server.admin, &format!("volumes:remove {app} web"));
    assert!(!out.status.success());
    server.admin(&format!("volumes:remove {app} cache"));
    let volumes: serde_json::Value =
        serde_json::from_str(&server.admin(&format!("volumes {app} --json"))).unwrap();
    assert_eq!(volumes, serde_json::json!([]));

    // Stop and start.
    server.admin(&format!("ps:stop {app}"));
    let (status, _) = server.get(&format!("{app}.localhost"), "/");
    assert_eq!(status, 503);
    assert_eq!(web_count(&server, &app), 0);
    server.admin(&format!("ps:start {app}"));
    wait_for("the app to answer again", Duration::from_secs(30), || {
        (server.get(&format!("{app}.localhost"), "/").0 == 200).then_some(())
    });
}

#[test]
fn procfile_gives_nodes_and_a_failing_release_command_rejects_the_push() {
    let server = Server::start();
    let app = common::unique_app("proc");
    let repo = Repo::fixture("hello");
    repo.write("Procfile", "web: exec httpd -f -p $PORT -h /www\nclock: while true; do sleep 1; done\nrelease: echo migrating\n");
    repo.commit("procfile");
    let log = server.push_ok(repo.path(), &app);
    assert!(log.contains("stack from Procfile"), "{log}");
    assert!(log.contains("migrating"), "the release command ran:\n{log}");
    assert_eq!(server.body(&app), "hello from v1\n");
    let names: Vec<String> = server
        .containers(Some(&app))
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        names,
        vec![format!("{app}.clock.1"), format!("{app}.web.1")]
    );

    repo.write(
        "Procfile",
        "web: exec httpd -f -p $PORT -h /www\nrelease: echo 'migration failed' >&2; exit 4\n",
    );
    repo.write("www/index.html", "never served\n");
    repo.commit("bad release");
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the release command of"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("exited with code 4"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.body(&app), "hello from v1\n");
}
