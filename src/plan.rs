//! The planner: desired state + current state → launch instructions.
//!
//! [`plan`] is a pure function over plain data: the executor (`launch`,
//! `route`) carries the instructions out, `build/plan.json` stores them, and
//! [`render`] prints them as the dry run of `quarry plan`. Nothing here does
//! I/O or reads a clock; it touches nothing outside itself except the types of
//! [`crate::manifest`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{Command, NodeKind, Service, ServiceSource};

/// One step of a deploy. Matched exhaustively by the executor: a new step
/// must be handled wherever instructions are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Instruction {
    /// Boot a service container unless one runs with this spec.
    Ensure {
        service: String,
        image: String,
        spec_hash: String,
    },
    /// Boot `scale` containers of the release, health-check them, switch the
    /// route, then stop the node's old containers (zero downtime).
    Deploy {
        node: String,
        release: u32,
        scale: u32,
    },
    /// Run the release's `release:` command in a one-off container, once,
    /// after the services are up and before any node rolls out.
    Release { release: u32, command: String },
    /// Add or remove containers of a node, keeping its release.
    Scale { node: String, from: u32, to: u32 },
    /// Add or remove domains of a node in the router (both sorted).
    Route {
        node: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// Stop and remove a container.
    Kill { container: String },
}

impl fmt::Display for Instruction {
    /// The dry-run line, such as `DEPLOY web v3 x2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::Ensure { service, image, .. } => write!(f, "ENSURE {service} ({image})"),
            Instruction::Deploy {
                node,
                release,
                scale,
            } => {
                write!(f, "DEPLOY {node} v{release} x{scale}")
            }
            Instruction::Release { release, command } => {
                write!(f, "RELEASE v{release}: {command}")
            }
            Instruction::Scale { node, from, to } => write!(f, "SCALE {node} {from} -> {to}"),
            Instruction::Route { node, add, remove } => {
                write!(f, "ROUTE {node}")?;
                for domain in add {
                    write!(f, " +{domain}")?;
                }
                for domain in remove {
                    write!(f, " -{domain}")?;
                }
                Ok(())
            }
            Instruction::Kill { container } => write!(f, "KILL {container}"),
        }
    }
}

/// What the app should look like once the plan has run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub app: String,
    /// The release being deployed; every node with containers runs it afterwards.
    pub release: u32,
    pub services: BTreeMap<String, DesiredService>,
    pub nodes: BTreeMap<String, DesiredNode>,
    /// The release command to run before the nodes roll out (a new release
    /// with a `release:` command), as the user wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_command: Option<String>,
    /// A node whose containers are all replaced even if they run this
    /// release (`ps:restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredService {
    /// The image to boot (pulled or built for this app).
    pub image: String,
    /// [`spec_hash`] of the service definition: a change restarts the service.
    pub spec_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNode {
    pub kind: NodeKind,
    pub scale: u32,
    /// Routed only for web nodes.
    pub domains: BTreeSet<String>,
}

/// What runs now, as found by the executor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    /// The live release of the app, if any (informational: the nodes' own
    /// releases decide what is redeployed).
    pub release: Option<u32>,
    pub services: BTreeMap<String, CurrentService>,
    pub nodes: BTreeMap<String, CurrentNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentService {
    pub spec_hash: String,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentNode {
    /// The release its containers run.
    pub release: u32,
    /// Container names `<app>.<node>.<n>`, n from 1.
    pub containers: Vec<String>,
    /// Domains routed to it now.
    pub domains: BTreeSet<String>,
}

/// The instructions that turn `current` into `desired`, in the order to run them:
/// services first (nodes may need them), then the release command (when a
/// node rolls out a new release that has one), then deploys and scaling,
/// then routes, then the kills of what is gone; each group sorted by name.
/// A node named by `desired.restart` is deployed even when it runs the
/// release already.
pub fn plan(desired: &Desired, current: &Current) -> Vec<Instruction> {
    let mut services = Vec::new();
    let mut launches = Vec::new();
    // Keyed by node, so removed and kept nodes' routes sort together.
    let mut routes = BTreeMap::new();
    let mut kills = Vec::new();

    for (name, want) in &desired.services {
        let ensure = Instruction::Ensure {
            service: name.clone(),
            image: want.image.clone(),
            spec_hash: want.spec_hash.clone(),
        };
        match current.services.get(name) {
            None => services.push(ensure),
            Some(have) if have.spec_hash != want.spec_hash => {
                // Replaced in place, before the nodes that use it are deployed.
                services.push(Instruction::Kill {
                    container: have.container.clone(),
                });
                services.push(ensure);
            }
            Some(_) => {}
        }
    }
    for (name, have) in &current.services {
        if !desired.services.contains_key(name) {
            kills.push(have.container.clone());
        }
    }

    let no_domains = BTreeSet::new();
    for (name, want) in &desired.nodes {
        let have = current.nodes.get(name);
        let running = have.map_or(0, |h| count(h.containers.len()));
        let same_release = have.is_some_and(|h| h.release == desired.release);
        let restart = desired.restart.as_deref() == Some(name.as_str());
        if want.scale > 0 && (!same_release || restart) {
            launches.push(Instruction::Deploy {
                node: name.clone(),
                release: desired.release,
                scale: want.scale,
            });
        } else if want.scale != running {
            // Same release, or scaled to zero: no new containers to boot.
            launches.push(Instruction::Scale {
                node: name.clone(),
                from: running,
                to: want.scale,
            });
        }
        // A worker routes nothing, even if it was a web node before.
        let wanted = match want.kind {
            NodeKind::Web => &want.domains,
            NodeKind::Worker => &no_domains,
        };
        let routed = have.map_or(&no_domains, |h| &h.domains);
        if let Some(route) = route(name, wanted, routed) {
            routes.insert(name, route);
        }
    }
    for (name, have) in &current.nodes {
        if desired.nodes.contains_key(name) {
            continue;
        }
        if let Some(route) = route(name, &no_domains, &have.domains) {
            routes.insert(name, route);
        }
        kills.extend(have.containers.iter().cloned());
    }

    kills.sort_by(|a, b| natural_key(a).cmp(&natural_key(b)));
    let kills = kills
        .into_iter()
        .map(|container| Instruction::Kill { container });
    let deploys = launches
        .iter()
        .any(|i| matches!(i, Instruction::Deploy { .. }));
    let release = desired
        .release_command
        .clone()
        .filter(|_| deploys)
        .map(|command| Instruction::Release {
            release: desired.release,
            command,
        });
    services
        .into_iter()
        .chain(release)
        .chain(launches)
        .chain(routes.into_values())
        .chain(kills)
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn route(node: &str, wanted: &BTreeSet<String>, routed: &BTreeSet<String>) -> Option<Instruction> {
    let add: Vec<String> = wanted.difference(routed).cloned().collect();
    let remove: Vec<String> = routed.difference(wanted).cloned().collect();
    if add.is_empty() && remove.is_empty() {
        return None;
    }
    Some(Instruction::Route {
        node: node.to_owned(),
        add,
        remove,
    })
}

/// Sorts `app.web.2` before `app.web.10`.
fn natural_key(container: &str) -> (&str, u64, &str) {
    let digits = container.len()
        - container
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let (stem, number) = container.split_at(container.len() - digits);
    (stem, number.parse().unwrap_or(0), container)
}

/// A stable fingerprint of a service definition (sha256, first 12 hex digits).
/// Everything that needs a restart when it changes is in it; the key names are
/// fixed here, so renaming a Rust field does not restart every service.
pub fn spec_hash(service: &Service) -> String {
    let source = match &service.source {
        ServiceSource::Image(image) => serde_json::json!({ "image": image }),
        ServiceSource::Build(dir) => serde_json::json!({ "build": dir }),
    };
    let command = match &service.command {
        None => serde_json::Value::Null,
        Some(Command::Shell(line)) => serde_json::json!({ "shell": line }),
        Some(Command::Exec(argv)) => serde_json::json!({ "exec": argv }),
    };
    let spec = serde_json::json!([
        ["source", source],
        ["port", service.port],
        ["volumes", service.volumes],
        ["command", command],
        ["env", service.env],
        ["memory", service.memory],
    ]);
    short_digest(&spec.to_string())
}

/// The first 6 bytes of the SHA-256 of `text`, in hex: a label-sized digest.
pub fn short_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The human dry run: one line per instruction, or `nothing to do`.
pub fn render(plan: &[Instruction]) -> String {
    if plan.is_empty() {
        return "nothing to do\n".to_owned();
    }
    plan.iter().map(|step| format!("{step}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "myapp";

    fn domains(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|d| d.to_string()).collect()
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
            },
        );
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

    fn running(release: u32, node: &str, count: u32, routed: &[&str]) -> CurrentNode {
        CurrentNode {
            release,
            containers: (1..=count).map(|n| format!("{APP}.{node}.{n}")).collect(),
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
}
