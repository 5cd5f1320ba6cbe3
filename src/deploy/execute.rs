//! Executing a plan: each instruction in order (ensure services, deploy
//! nodes in batches, scale, route, kill), then the old containers retired;
//! on failure the route goes back and what the attempt started is removed.
//! `services` boots and relinks services, `nodes` places and boots node
//! containers, `route` switches nginx and retires the old ones.
//! May touch: the engines through launch, nginx through route.

use super::*;
use crate::plan::ServiceAt;

mod nodes;
mod route;
mod services;

/// Rewrite `app`'s routes from the containers that run now (after a restart
/// of Quarry, their addresses may have changed).
pub async fn reroute(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
) -> Result<(), DeployError> {
    let desired = desired(d, app, release, stack)?;
    let (_, found) = current(d, app, stack).await?;
    let p = Progress::silent();
    let mut run = Execution::new(d, app, release, stack, &desired, &p);
    run.switch_route(&found).await
}

/// Bring `app` to `release` with `stack`: plan, print the plan, execute it.
pub async fn apply(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    p: &Progress,
) -> Result<(), DeployError> {
    apply_restarting(d, app, release, stack, None, p).await
}

/// [`apply`], and also replace every container of `restart` (a rolling
/// restart of one node under the same release).
pub async fn apply_restarting(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    restart: Option<&str>,
    p: &Progress,
) -> Result<(), DeployError> {
    let mut desired = desired(d, app, release, stack)?;
    desired.restart = restart.map(str::to_string);
    let (current, found) = current(d, app, stack).await?;
    let instructions = plan::plan(&desired, &current);
    let plan_path = d.store.app_dir(app).join("build").join("plan.json");
    store::write_json(&plan_path, &instructions, 0o644)?;
    p.step("Plan");
    p.detail(plan::render(&instructions));
    let _rollout = d.cloud.rollout();
    let mut run = Execution::new(d, app, release, stack, &desired, p);
    let result = execute_or_undo(&mut run, &instructions, &found).await;
    // Only a plan that did something can have moved a slice.
    if !instructions.is_empty()
        && let Err(e) = persist_grid(d).await
    {
        tracing::warn!(app, "cannot write grid/grid.json: {e}");
    }
    result
}

/// Run the plan; on failure, route back and remove what this attempt started.
async fn execute_or_undo(
    run: &mut Execution<'_>,
    instructions: &[Instruction],
    found: &[Found],
) -> Result<(), DeployError> {
    match run.execute(instructions, found).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let started = std::mem::take(&mut run.started);
            if run.routed {
                // Batches already switched: give the route back to the old
                // containers, which kept running, before removing the new.
                run.retire.clear();
                run.p
                    .warn("rolling back: routing to the previous containers again");
                if let Err(back) = run.switch_route(found).await {
                    run.p.warn(format!("cannot route back: {back}"));
                }
            }
            let jobs = started.iter().map(|s| launch::remove(&s.docker, &s.id, 0));
            futures_util::future::join_all(jobs).await;
            Err(e)
        }
    }
}

/// A container this attempt started.
struct Started {
    id: String,
    node: String,
    /// The engine of the server it runs on.
    docker: bollard::Docker,
    /// The name it was created with, and the one it takes once the old
    /// container is gone (the same for a scale-up).
    booted_as: String,
    final_name: String,
    address: Option<std::net::SocketAddr>,
}

struct Execution<'a> {
    d: &'a Daemon,
    app: &'a str,
    release: &'a Release,
    stack: &'a Stack,
    desired: &'a Desired,
    p: &'a Progress,
    started: Vec<Started>,
    /// Old containers to stop once the route no longer points at them.
    retire: Vec<Found>,
    /// Where containers are, built on first need and kept current as this
    /// execution places new ones.
    grid: Option<crate::grid::Grid>,
    /// Whether nginx was switched before the end (batched rollouts): a
    /// failure then routes back to the old containers.
    routed: bool,
    /// Where each running service is: its server, and its port as
    /// published on that server's address (for nodes on other servers).
    services: BTreeMap<String, ServiceAt>,
}

impl<'a> Execution<'a> {
    fn new(
        d: &'a Daemon,
        app: &'a str,
        release: &'a Release,
        stack: &'a Stack,
        desired: &'a Desired,
        p: &'a Progress,
    ) -> Execution<'a> {
        Execution {
            d,
            app,
            release,
            stack,
            desired,
            p,
            started: Vec::new(),
            retire: Vec::new(),
            grid: None,
            routed: false,
            services: BTreeMap::new(),
        }
    }

    async fn execute(
        &mut self,
        instructions: &[Instruction],
        found: &[Found],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let network = self.network_on(crate::fleet::LOCAL).await?;
        self.locate_services(found).await;
        let mut route = false;
        for ins in instructions {
            match ins {
                Instruction::Ensure {
                    service,
                    image,
                    spec_hash,
                } => {
                    self.ensure(service, image, spec_hash, &network, found)
                        .await?
                }
                Instruction::Release { .. } => {
                    if let Some(cmd) = &self.stack.manifest.release {
                        self.release_command(cmd, &network).await?;
                    }
                }
                Instruction::Deploy {
                    node,
                    release,
                    scale,
                } => {
                    self.deploy_node(node, *release, *scale, &network, found)
                        .await?;
                    route = true;
                }
                Instruction::Relink {
                    node, containers, ..
                } => {
                    self.relink(node, containers, found, &network).await?;
                    route = true;
                }
                Instruction::Scale { node, from, to } => {
                    self.p.step(format!("Scaling {node} {from} -> {to}"));
                    let live: Vec<&Found> = found
                        .iter()
                        .filter(|c| &c.node == node && c.is_steady() && d.server_running(&c.server))
                        .collect();
                    // Containers on a draining server are replaced elsewhere.
                    self.retire.extend(
                        found
                            .iter()
                            .filter(|c| {
                                &c.node == node
                                    && c.service.is_none()
                                    && !d.server_running(&c.server)
                            })
                            .cloned(),
                    );
                    let have: BTreeSet<u32> = live.iter().map(|c| c.index).collect();
                    for index in 1..=*to {
                        if !have.contains(&index) {
                            let name = format!("{}.{node}.{index}", self.app);
                            self.boot(node, index, &name, &network).await?;
                        }
                    }
                    self.retire
                        .extend(live.iter().filter(|c| c.index > *to).map(|c| (*c).clone()));
                    route = true;
                }
                Instruction::Route { .. } => route = true,
                Instruction::Kill { container } => {
                    if let Some(c) = found.iter().find(|c| &c.name == container) {
                        if c.service.is_some() {
                            self.p.step(format!(
                                "Stopping service container {container} (its volumes are kept)"
                            ));
                            launch::remove(&d.docker_on(&c.server), &c.id, 10).await?;
                        } else {
                            self.retire.push(c.clone());
                        }
                    }
                }
            }
        }
        if route {
            self.switch_route(found).await?;
        }
        test_pause(d, "routed", self.release.number);
        self.retire_old().await;
        Ok(())
    }

    /// The id of the app's network on `server`, made on first need.
    async fn network_on(&self, server: &str) -> Result<String, DeployError> {
        let d = self.d;
        let config = crate::cloud::Config::load(&d.store)?;
        let docker = d.docker_on(server);
        let net = d
            .networks
            .ensure(&docker, &d.instance, server, self.app, &config.network)
            .await?;
        Ok(net.id)
    }

    /// Whether a service on `server` must publish its port: only when
    /// another server could run a node that reaches it there.
    fn published_needed(&self, server: &str) -> bool {
        self.d
            .fleet
            .list()
            .iter()
            .any(|s| s.name != server && s.state == crate::fleet::ServerState::Running)
    }

    /// Digest of the service addresses a node container on `server` gets.
    fn links(&self, server: &str) -> String {
        let services = self
            .stack
            .manifest
            .services
            .iter()
            .map(|(name, service)| (name.as_str(), service.port, self.services.get(name)));
        plan::links_digest(self.app, services, server)
    }

    /// Replace `containers` of `node` (a plan's RELINK: their service
    /// addresses are out of date) one by one, beside the old ones.
    async fn relink(
        &mut self,
        node: &str,
        containers: &[String],
        found: &[Found],
        network: &str,
    ) -> Result<(), DeployError> {
        let stale: Vec<Found> = found
            .iter()
            .filter(|c| c.is_steady() && c.node == node && containers.contains(&c.name))
            .cloned()
            .collect();
        self.p.step(format!(
            "A service moved: replacing {} container(s) that knew its old address",
            stale.len()
        ));
        for c in stale {
            let temp = format!(
                "{}.{}.{}.v{}",
                self.app, c.node, c.index, self.release.number
            );
            self.boot(&c.node, c.index, &temp, network).await?;
            self.retire.push(c);
        }
        Ok(())
    }

    /// Record where the app's running services are.
    async fn locate_services(&mut self, found: &[Found]) {
        for c in found
            .iter()
            .filter(|c| c.state == crate::launch::ContainerState::Running)
        {
            let Some(service) = &c.service else { continue };
            let Some(def) = self.stack.manifest.services.get(service) else {
                continue;
            };
            let published = match def.port {
                Some(port) => launch::published(&self.d.docker_on(&c.server), &c.id, port)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            // Services placed before the record existed get one here.
            homes::record(
                &self.d.store,
                self.app,
                service,
                homes::Home {
                    server: c.server.clone(),
                    published,
                },
            );
            self.services.insert(
                service.clone(),
                ServiceAt {
                    server: c.server.clone(),
                    published,
                },
            );
        }
    }

    async fn release_command(
        &mut self,
        cmd: &crate::manifest::Command,
        network: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        self.p.step("Running the release command");
        let spec = ContainerSpec {
            name: format!("{}.release.v{}", self.app, self.release.number),
            image: self.release.image.clone(),
            app: self.app.to_string(),
            node: "release".into(),
            index: 0,
            release: self.release.number,
            env: self.node_env(None, crate::fleet::LOCAL),
            command: Some(cmd.clone()),
            memory: None,
            publish_on: None,
            service_port: None,
            network: Some(network.to_string()),
            aliases: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::from([(launch::LABEL_ONEOFF.to_string(), "release".to_string())]),
            restart: false,
        };
        let (code, logs) =
            launch::run_once(&d.docker, &d.instance, &spec, Duration::from_secs(600)).await?;
        for line in &logs {
            self.p.detail(line);
        }
        if code != 0 {
            return Err(DeployError::ReleaseCommand {
                app: self.app.to_string(),
                code,
            });
        }
        Ok(())
    }

    /// Environment of a node container on `server`: global < quarry.yml <
    /// node < config vars, plus every service's address: its name on the
    /// app's network when it runs on the same server, else its published
    /// address on its own server.
    fn node_env(&self, node: Option<&Node>, server: &str) -> BTreeMap<String, String> {
        let mut env = self.release.global_env.clone();
        env.extend(self.stack.manifest.env.clone());
        if let Some(n) = node {
            env.extend(n.env.clone());
        }
        env.extend(self.release.env.clone());
        for (name, service) in &self.stack.manifest.services {
            let at = self.services.get(name);
            env.extend(plan::service_vars(self.app, name, service.port, at, server));
        }
        env
    }
}

fn not_ready(app: &str, label: &str, nr: launch::NotReady, p: &Progress) -> DeployError {
    if !nr.logs.is_empty() {
        p.warn(format!("last log lines of {app}.{label}:"));
        for line in &nr.logs {
            p.warn(format!("  {line}"));
        }
    }
    DeployError::NotReady {
        app: app.to_string(),
        label: label.to_string(),
        reason: nr.reason,
    }
}
