//! Self-healing: containers that die are replaced and routes follow.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, Server, wait_for};

#[test]
fn a_killed_container_is_replaced_within_seconds() {
    let server = Server::start();
    let app = common::unique_app("heal");
    let repo = Repo::fixture("stack");
    server.push_ok(repo.path(), &app);
    assert!(server.body(&app).contains("greeting=hello"));

    for victim in [
        format!("{app}.web.1"),
        format!("{app}.cache"),
        format!("{app}.worker.1"),
    ] {
        let out = Command::new("docker")
            .args(["kill", &victim])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        let killed = Instant::now();
        wait_for(
            &format!("{victim} to run again"),
            Duration::from_secs(30),
            || {
                let running = server
                    .containers(Some(&app))
                    .iter()
                    .any(|c| c.0 == victim && c.1 == "running");
                running.then_some(())
            },
        );
        eprintln!("{victim} was back after {:?}", killed.elapsed());
    }
    // Both web containers answer through nginx again.
    wait_for(
        "both web containers behind nginx",
        Duration::from_secs(30),
        || {
            let hosts: std::collections::BTreeSet<String> = (0..40)
                .filter_map(|_| {
                    let (status, body) = server.get(&format!("{app}.localhost"), "/");
                    (status == 200)
                        .then(|| body.split_whitespace().next().unwrap_or("").to_string())
                })
                .collect();
            (hosts.len() == 2).then_some(())
        },
    );
    // What happened is in the events.
    let events = server.admin(&format!("events {app}"));
    assert!(
        events.contains("heal") && events.contains(&format!("{app}.web.1 was exited")),
        "{events}"
    );
}
