//! Golden dry runs of the planner: first deploys, redeploys, scaling,
//! routes, services, release commands, restarts and relinks (more of
//! those in `tests/relink.rs`).

use super::*;

mod relink;

const APP: &str = "myapp";
const LOCAL: &str = "local";

/// The links digest of a container on `server` that reaches the cache at `cache`.
fn linked(server: &str, cache: &ServiceAt) -> Linked {
    let services = [("cache", Some(6379), Some(cache))];
    Linked {
        server: server.into(),
        digest: links_digest(APP, services, server),
    }
}

fn at(server: &str, published: Option<&str>) -> ServiceAt {
    ServiceAt {
        server: server.into(),
        published: published.map(|p| p.parse().unwrap()),
    }
}

fn domains(list: &[&str]) -> BTreeSet<Domain> {
    list.iter().map(|&d| Domain::from(d)).collect()
}

/// The app as pushed: a redis cache, two routed web containers, one worker.
fn desired(release: u32) -> Desired {
    let mut d = Desired {
        app: APP.into(),
        release,
        ..Desired::default()
    };
    d.services.insert(
        "cache".into(),
        DesiredService {
            image: "redis:7".into(),
            spec_hash: "aaaaaaaaaaaa".into(),
            port: Some(6379),
            waiting: None,
        },
    );
    d.servers.insert(LOCAL.into());
    add_node(&mut d, "web", NodeKind::Web, 2, &["www.example.com"]);
    add_node(&mut d, "worker", NodeKind::Worker, 1, &[]);
    d
}

fn add_node(d: &mut Desired, name: &str, kind: NodeKind, scale: u32, routed: &[&str]) {
    let node = DesiredNode {
        kind,
        scale,
        domains: domains(routed),
    };
    d.nodes.insert(name.into(), node);
}

/// `count` containers of `node` on the local server, linked to the cache there.
fn running(release: u32, node: &str, count: u32, routed: &[&str]) -> CurrentNode {
    let containers: Vec<String> = (1..=count).map(|n| format!("{APP}.{node}.{n}")).collect();
    let cache = at(LOCAL, None);
    CurrentNode {
        release,
        linked: containers
            .iter()
            .map(|c| (c.clone(), linked(LOCAL, &cache)))
            .collect(),
        containers,
        domains: domains(routed),
    }
}

/// What `desired(2)` left running.
fn live_v2() -> Current {
    let mut c = Current {
        release: Some(2),
        ..Current::default()
    };
    c.services.insert(
        "cache".into(),
        CurrentService {
            spec_hash: "aaaaaaaaaaaa".into(),
            container: format!("{APP}.cache"),
            at: at(LOCAL, None),
        },
    );
    c.nodes
        .insert("web".into(), running(2, "web", 2, &["www.example.com"]));
    c.nodes
        .insert("worker".into(), running(2, "worker", 1, &[]));
    c
}

fn dry_run(desired: &Desired, current: &Current) -> String {
    render(&plan(desired, current))
}

#[test]
fn a_new_release_with_a_release_command_runs_it_after_the_services_before_the_nodes() {
    let mut want = desired(3);
    want.release_command = Some("rake db:migrate".into());
    assert_eq!(
        dry_run(&want, &live_v2()),
        "RELEASE v3: rake db:migrate\n\
             DEPLOY web v3 x2\n\
             DEPLOY worker v3 x1\n"
    );
    let mut changed = live_v2();
    changed.services.get_mut("cache").unwrap().spec_hash = "bbbbbbbbbbbb".into();
    assert_eq!(
        dry_run(&want, &changed),
        "KILL myapp.cache\n\
             ENSURE cache (redis:7)\n\
             RELEASE v3: rake db:migrate\n\
             DEPLOY web v3 x2\n\
             DEPLOY worker v3 x1\n"
    );
    // Nothing rolls out (a scale change of the live release): no command.
    let mut scaled = desired(2);
    scaled.release_command = Some("rake db:migrate".into());
    scaled.nodes.get_mut("web").unwrap().scale = 3;
    assert_eq!(dry_run(&scaled, &live_v2()), "SCALE web 2 -> 3\n");
    assert_eq!(
        serde_json::to_value(&plan(&want, &live_v2())[0]).unwrap(),
        serde_json::json!({"op": "RELEASE", "release": 3, "command": "rake db:migrate"})
    );
}

#[test]
fn a_restart_redeploys_the_node_on_its_own_release_and_nothing_else() {
    let mut want = desired(2);
    assert_eq!(dry_run(&want, &live_v2()), "nothing to do\n");
    want.restart = Some("web".into());
    assert_eq!(dry_run(&want, &live_v2()), "DEPLOY web v2 x2\n");
    // A restart of a node scaled to zero boots nothing.
    want.nodes.get_mut("web").unwrap().scale = 0;
    assert_eq!(dry_run(&want, &live_v2()), "SCALE web 2 -> 0\n");
}

#[test]
fn a_service_moved_relinks_the_nodes_that_are_not_redeployed() {
    // The cache came up on server b (publishing its port) while the web
    // and worker containers on the local server knew it on the local one.
    let mut want = desired(2);
    want.servers.insert("b".into());
    let mut moved = live_v2();
    moved.services.get_mut("cache").unwrap().at = at("b", Some("10.0.0.2:32768"));
    assert_eq!(
        dry_run(&want, &moved),
        "RELINK web x2 (service addresses changed)\n\
             RELINK worker x1 (service addresses changed)\n"
    );
    // A new release redeploys both: nothing left to relink.
    assert_eq!(
        dry_run(&desired(3), &moved),
        "DEPLOY web v3 x2\n\
             DEPLOY worker v3 x1\n"
    );
    assert_eq!(
        serde_json::to_value(&plan(&want, &moved)[1]).unwrap(),
        serde_json::json!({"op": "RELINK", "node": "worker",
            "containers": ["myapp.worker.1"], "reason": "service addresses changed"})
    );
}

#[test]
fn first_deploy() {
    let steps = plan(&desired(1), &Current::default());
    assert_eq!(
        render(&steps),
        "ENSURE cache (redis:7)\n\
             DEPLOY web v1 x2\n\
             DEPLOY worker v1 x1\n\
             ROUTE web +www.example.com\n"
    );
    assert_eq!(
        serde_json::to_string_pretty(&steps).unwrap(),
        r#"[
  {
    "op": "ENSURE",
    "service": "cache",
    "image": "redis:7",
    "spec_hash": "aaaaaaaaaaaa"
  },
  {
    "op": "DEPLOY",
    "node": "web",
    "release": 1,
    "scale": 2
  },
  {
    "op": "DEPLOY",
    "node": "worker",
    "release": 1,
    "scale": 1
  },
  {
    "op": "ROUTE",
    "node": "web",
    "add": [
      "www.example.com"
    ],
    "remove": []
  }
]"#
    );
}

#[test]
fn instructions_round_trip_through_json() {
    let mut steps = plan(&desired(1), &Current::default());
    steps.push(Instruction::Scale {
        node: "web".into(),
        from: 2,
        to: 0,
    });
    steps.push(Instruction::Kill {
        container: "myapp.web.1".into(),
    });
    let json = serde_json::to_string(&steps).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Instruction>>(&json).unwrap(),
        steps
    );
    assert_eq!(
        serde_json::to_string(&steps[4]).unwrap(),
        r#"{"op":"SCALE","node":"web","from":2,"to":0}"#
    );
}

#[test]
fn redeploy_restarts_every_node_but_no_service() {
    assert_eq!(
        dry_run(&desired(3), &live_v2()),
        "DEPLOY web v3 x2\nDEPLOY worker v3 x1\n"
    );
}

#[test]
fn node_added() {
    let mut d = desired(3);
    add_node(&mut d, "api", NodeKind::Web, 1, &["api.example.com"]);
    assert_eq!(
        dry_run(&d, &live_v2()),
        "DEPLOY api v3 x1\n\
             DEPLOY web v3 x2\n\
             DEPLOY worker v3 x1\n\
             ROUTE api +api.example.com\n"
    );
}

#[test]
fn node_removed() {
    let mut current = live_v2();
    current.nodes.insert(
        "admin".into(),
        running(2, "admin", 2, &["admin.example.com"]),
    );
    let mut d = desired(3);
    d.nodes.remove("worker");
    assert_eq!(
        dry_run(&d, &current),
        "DEPLOY web v3 x2\n\
             ROUTE admin -admin.example.com\n\
             KILL myapp.admin.1\n\
             KILL myapp.admin.2\n\
             KILL myapp.worker.1\n"
    );
}

#[test]
fn service_added() {
    let mut d = desired(3);
    d.services.insert(
        "db".into(),
        DesiredService {
            image: "postgres:16".into(),
            spec_hash: "bbbbbbbbbbbb".into(),
            port: None,
            waiting: None,
        },
    );
    assert_eq!(
        dry_run(&d, &live_v2()),
        "ENSURE db (postgres:16)\nDEPLOY web v3 x2\nDEPLOY worker v3 x1\n"
    );
}

#[test]
fn service_removed() {
    let mut d = desired(3);
    d.services.clear();
    assert_eq!(
        dry_run(&d, &live_v2()),
        "DEPLOY web v3 x2\nDEPLOY worker v3 x1\nKILL myapp.cache\n"
    );
}

#[test]
fn service_definition_changed() {
    let mut d = desired(3);
    d.services.insert(
        "cache".into(),
        DesiredService {
            image: "redis:7.2".into(),
            spec_hash: "cccccccccccc".into(),
            port: Some(6379),
            waiting: None,
        },
    );
    assert_eq!(
        dry_run(&d, &live_v2()),
        "KILL myapp.cache\n\
             ENSURE cache (redis:7.2)\n\
             DEPLOY web v3 x2\n\
             DEPLOY worker v3 x1\n"
    );
}

#[test]
fn scale_up() {
    let mut d = desired(2);
    d.nodes.get_mut("web").unwrap().scale = 4;
    assert_eq!(dry_run(&d, &live_v2()), "SCALE web 2 -> 4\n");
}

#[test]
fn scale_down() {
    let mut d = desired(2);
    d.nodes.get_mut("web").unwrap().scale = 1;
    assert_eq!(dry_run(&d, &live_v2()), "SCALE web 2 -> 1\n");
}

#[test]
fn scale_to_zero() {
    let mut d = desired(2);
    d.nodes.get_mut("worker").unwrap().scale = 0;
    assert_eq!(dry_run(&d, &live_v2()), "SCALE worker 1 -> 0\n");
    // A new release does not boot a node that is to run nothing.
    d.release = 3;
    assert_eq!(
        dry_run(&d, &live_v2()),
        "DEPLOY web v3 x2\nSCALE worker 1 -> 0\n"
    );
    // Nothing runs and nothing should: no step.
    let mut stopped = live_v2();
    stopped
        .nodes
        .insert("worker".into(), running(2, "worker", 0, &[]));
    assert_eq!(dry_run(&d, &stopped), "DEPLOY web v3 x2\n");
    // Back from zero on the same release.
    assert_eq!(dry_run(&desired(2), &stopped), "SCALE worker 0 -> 1\n");
}

#[test]
fn domain_added() {
    let mut d = desired(2);
    d.nodes
        .get_mut("web")
        .unwrap()
        .domains
        .insert("api.example.com".into());
    assert_eq!(dry_run(&d, &live_v2()), "ROUTE web +api.example.com\n");
}

#[test]
fn domain_removed() {
    let mut d = desired(2);
    d.nodes.get_mut("web").unwrap().domains.clear();
    assert_eq!(dry_run(&d, &live_v2()), "ROUTE web -www.example.com\n");
    d.nodes.get_mut("web").unwrap().domains = domains(&["b.example.com", "a.example.com"]);
    assert_eq!(
        dry_run(&d, &live_v2()),
        "ROUTE web +a.example.com +b.example.com -www.example.com\n"
    );
}

#[test]
fn a_web_node_turned_worker_loses_its_domains() {
    let mut d = desired(3);
    d.nodes.get_mut("web").unwrap().kind = NodeKind::Worker;
    assert_eq!(
        dry_run(&d, &live_v2()),
        "DEPLOY web v3 x2\nDEPLOY worker v3 x1\nROUTE web -www.example.com\n"
    );
}

#[test]
fn nothing_changed() {
    assert_eq!(dry_run(&desired(2), &live_v2()), "nothing to do\n");
    assert_eq!(render(&[]), "nothing to do\n");
}

#[test]
fn routes_sort_by_node_whether_kept_or_removed() {
    let mut current = live_v2();
    current.nodes.insert(
        "admin".into(),
        running(2, "admin", 1, &["admin.example.com"]),
    );
    let mut d = desired(2);
    d.nodes.get_mut("web").unwrap().domains = domains(&["new.example.com"]);
    add_node(&mut d, "zeta", NodeKind::Web, 0, &["zeta.example.com"]);
    assert_eq!(
        dry_run(&d, &current),
        "ROUTE admin -admin.example.com\n\
             ROUTE web +new.example.com -www.example.com\n\
             ROUTE zeta +zeta.example.com\n\
             KILL myapp.admin.1\n"
    );
}

#[test]
fn kills_sort_by_container_number() {
    let mut current = live_v2();
    current
        .nodes
        .insert("old".into(), running(2, "old", 11, &[]));
    let kills: Vec<String> = plan(&desired(2), &current)
        .iter()
        .map(ToString::to_string)
        .collect();
    let expected: Vec<String> = (1..=11).map(|n| format!("KILL myapp.old.{n}")).collect();
    assert_eq!(kills, expected);
}

fn redis() -> Service {
    Service {
        source: ServiceSource::Image("redis:7".into()),
        port: Some(6379),
        volumes: vec!["/data".into()],
        command: None,
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
        memory: Some(128),
        placement: Default::default(),
    }
}

#[test]
fn spec_hash_is_stable() {
    // Pinned: a change here restarts every service of every app on upgrade.
    // sha256 of [["source",{"image":"redis:7"}],["port",6379],["volumes",["/data"]],
    // ["command",null],["env",{"A":"1","B":"2"}],["memory",128]]
    assert_eq!(spec_hash(&redis()), "901152f1b2d3");
    assert_eq!(spec_hash(&redis()).len(), 12);
}

#[test]
fn spec_hash_sees_every_field() {
    let base = spec_hash(&redis());
    let changes: [fn(&mut Service); 7] = [
        |s| s.source = ServiceSource::Image("redis:8".into()),
        |s| s.source = ServiceSource::Build("redis:7".into()),
        |s| s.port = None,
        |s| s.volumes.push("/logs".into()),
        |s| s.command = Some(Command::Exec(vec!["redis-server".into()])),
        |s| {
            s.env.insert("A".into(), "2".into());
        },
        |s| s.memory = Some(256),
    ];
    let mut seen = BTreeSet::from([base]);
    for change in changes {
        let mut s = redis();
        change(&mut s);
        assert!(seen.insert(spec_hash(&s)), "{s:?}");
    }
    let mut shell = redis();
    shell.command = Some(Command::Shell("redis-server".into()));
    assert!(seen.insert(spec_hash(&shell)));
}
