//! kill -9 of the daemon in the middle of deploys: after a restart one
//! release serves, nothing stray is left, and the next push works.

mod common;

use std::path::Path;

use common::{Repo, Server, wait_line};

fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(".tmp-") {
            found.push(path.display().to_string());
        } else if path.is_dir() && name != "repo.git" && name != "src" {
            found.extend(temp_files(&path));
        }
    }
    found
}

#[test]
fn a_daemon_killed_mid_deploy_recovers_with_one_release_serving() {
    let mut server = Server::start();
    let app = common::unique_app("crash");
    let repo = Repo::fixture("slow");
    repo.write("nonce", &app);
    repo.commit("v1");
    server.push_ok(repo.path(), &app);

    // Kill once while building, once while the new container boots.
    for (round, moment) in ["-----> Building", "-----> Starting web"]
        .into_iter()
        .enumerate()
    {
        repo.write("nonce", &format!("{app}-{round}"));
        repo.write("www/index.html", &format!("attempt {round}\n"));
        repo.commit(&format!("attempt {round}"));
        let mut push = server.push_spawn(&server.admin, repo.path(), &app);
        let (_, rest) = wait_line(&mut push, moment);
        server.kill9();
        let status = push.wait().unwrap();
        let rest = rest.join().unwrap();
        assert!(
            !status.success(),
            "a push whose daemon died must not be accepted:\n{rest}"
        );

        server.restart();
        // The old release serves; the interrupted one is on the books as failed.
        assert_eq!(server.body(&app), "slow v1\n", "round {round}");
        let releases: serde_json::Value =
            serde_json::from_str(&server.admin(&format!("releases {app} --json"))).unwrap();
        let interrupted = &releases[0];
        assert_eq!(interrupted["status"], "failed", "{releases}");
        assert!(
            interrupted["reason"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{releases}"
        );
        // Only the live release's container is left; no temp files.
        let containers = server.containers(Some(&app));
        assert_eq!(containers.len(), 1, "round {round}: {containers:?}");
        assert_eq!(containers[0].0, format!("{app}.web.1"));
        assert_eq!(containers[0].2, "1");
        assert_eq!(temp_files(&server.data), Vec::<String>::new());
        // The branch did not move.
        let head = server.clone_app(&app);
        assert_eq!(
            std::fs::read_to_string(head.path().join("www/index.html")).unwrap(),
            "slow v1\n"
        );
    }

    // And the next push goes through.
    repo.write("nonce", &format!("{app}-final"));
    repo.write("www/index.html", "after the crashes\n");
    repo.commit("final");
    server.push_ok(repo.path(), &app);
    assert_eq!(server.body(&app), "after the crashes\n");
    assert_eq!(server.containers(Some(&app)).len(), 1);
}
