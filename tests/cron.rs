//! Scheduled jobs end to end: quarry.yml `cron:` on the real server and
//! engine. Schedules use the seconds field so that runs come within a
//! test's bounded clock budget.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Repo, Server, stderr, stdout, wait_for};

/// The hello app with `quarry.yml` `cron:` set to `jobs` (YAML lines).
fn app_with_jobs(jobs: &str) -> Repo {
    let repo = Repo::fixture("hello");
    repo.write("quarry.yml", &format!("nodes:\n  web: {{}}\ncron:\n{jobs}"));
    repo.commit("jobs");
    repo
}

fn cron_json(server: &Server, app: &str) -> serde_json::Value {
    serde_json::from_str(&server.admin(&format!("cron {app} --json"))).unwrap()
}

fn job<'a>(jobs: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    jobs.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {jobs}"))
}

#[test]
fn scheduled_jobs_run_record_their_exit_code_and_output() {
    let server = Server::start();
    let app = common::unique_app("cron");
    let repo = app_with_jobs(
        "  tick: { schedule: \"*/2 * * * * *\", command: \"echo tick-$GREETING\", timeout: 30 }\n  fail: { schedule: \"*/2 * * * * *\", command: [sh, -c, \"exit 4\"] }\n",
    );
    server.push_ok(repo.path(), &app);
    server.admin(&format!("config:set {app} GREETING=scheduled"));

    let jobs = wait_for("both jobs to have run", Duration::from_secs(40), || {
        let jobs = cron_json(&server, &app);
        let done = |name| job(&jobs, name)["last"]["exit"].is_i64();
        (done("tick") && done("fail")).then_some(jobs)
    });
    assert_eq!(job(&jobs, "tick")["last"]["exit"], 0, "{jobs}");
    assert_eq!(job(&jobs, "fail")["last"]["exit"], 4, "{jobs}");
    assert_eq!(job(&jobs, "tick")["schedule"], "*/2 * * * * *");
    assert!(job(&jobs, "tick")["next"].is_string(), "{jobs}");

    let table = server.admin(&format!("cron {app}"));
    assert!(
        table.contains("tick") && table.contains("echo tick-$GREETING"),
        "{table}"
    );
    // Runs after config:set see the new value.
    wait_for("a run with the config var", Duration::from_secs(30), || {
        server
            .admin(&format!("logs {app} --cron tick"))
            .contains("tick-scheduled")
            .then_some(())
    });
    let events = server.admin(&format!("events {app}"));
    assert!(events.contains("fail: exit 4"), "{events}");
    assert!(events.contains("tick: exit 0"), "{events}");

    // cron:run starts one now and answers with its output and exit code.
    let out = server.ssh(&server.admin, &format!("cron:run {app} fail"));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = server.ssh(&server.admin, &format!("cron:run {app} nope"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn a_job_still_running_when_it_is_due_again_is_skipped() {
    let server = Server::start();
    let app = common::unique_app("overlap");
    let repo = app_with_jobs(
        "  slow: { schedule: \"* * * * * *\", command: \"sleep 3; echo slow-done\" }\n",
    );
    server.push_ok(repo.path(), &app);
    let mut most = 0;
    wait_for("a skipped run in events", Duration::from_secs(40), || {
        let running = Command::new("docker")
            .args(["ps", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label=quarry.app={app}"))
            .args(["--filter", "label=quarry.oneoff=cron"])
            .output()
            .unwrap();
        most = most.max(stdout(&running).lines().count());
        server
            .admin(&format!("events {app}"))
            .contains("slow: skipped, the last run is still going")
            .then_some(())
    });
    assert!(most <= 1, "{most} runs of one job at once");
    wait_for("a finished run", Duration::from_secs(20), || {
        server
            .admin(&format!("logs {app} --cron slow"))
            .contains("slow-done")
            .then_some(())
    });
}

/// The run times and releases in a job's log: `=== JOB vN at TIME: …`.
fn runs(log: &str) -> Vec<(u32, jiff::Timestamp)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("=== ")?;
            let (_, rest) = rest.split_once(" v")?;
            let (n, rest) = rest.split_once(" at ")?;
            let (time, _) = rest.split_once(": ")?;
            Some((n.parse().ok()?, time.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_job_due_during_a_deploy_waits_and_runs_the_new_release() {
    let server = Server::start();
    let app = common::unique_app("cronwait");
    let repo = app_with_jobs("  mark: { schedule: \"* * * * * *\", command: \"echo mark-one\" }\n");
    server.push_ok(repo.path(), &app);
    wait_for("a v1 run", Duration::from_secs(30), || {
        runs(&server.admin(&format!("logs {app} --cron mark")))
            .iter()
            .any(|(v, _)| *v == 1)
            .then_some(())
    });
    // v2 boots slowly, so the deploy holds the app's lock for a while.
    repo.write(
        "quarry.yml",
        "nodes:\n  web: {}\ncron:\n  mark: { schedule: \"* * * * * *\", command: \"echo mark-two\" }\n",
    );
    repo.write(
        "Dockerfile",
        "FROM quarry-base/busybox:latest\nCOPY www /www\nCMD [\"/bin/sh\", \"-c\", \"sleep 4; exec httpd -f -p \\\"$PORT\\\" -h /www\"]\n",
    );
    repo.commit("slow v2");
    let pushed = jiff::Timestamp::now();
    server.push_ok(repo.path(), &app);
    let live = jiff::Timestamp::now();
    assert!(live.duration_since(pushed).as_secs_f64() > 4.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = server.admin(&format!("logs {app} --cron mark"));
        if runs(&log).iter().any(|(v, _)| *v == 2) {
            break log;
        }
        if std::time::Instant::now() > deadline {
            let events = server.admin(&format!("events {app}"));
            let daemon = server.log();
            let tail: Vec<&str> = daemon.lines().rev().take(40).collect();
            panic!("no v2 run after 60s:\n{log}\n{events}\n{}", tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Nothing started while the deploy held the lock, and what was due then
    // ran v2 once it was live.
    let settled = pushed + jiff::SignedDuration::from_millis(1500);
    for (v, at) in runs(&log) {
        if at > settled {
            assert_eq!(
                v, 2,
                "a run at {at} used v{v} (deploy {pushed}..{live}):\n{log}"
            );
        }
    }
    assert!(log.contains("mark-two"), "{log}");
}

#[test]
fn a_bad_schedule_rejects_the_push_with_its_line_and_key() {
    let server = Server::start();
    let app = common::unique_app("badcron");
    let repo = app_with_jobs("  nightly: { schedule: \"0 25 * * *\", command: ./report }\n");
    let out = server.push(repo.path(), &app);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("quarry.yml:4: cron.nightly.schedule: invalid schedule \"0 25 * * *\""),
        "{}",
        stderr(&out)
    );
}
