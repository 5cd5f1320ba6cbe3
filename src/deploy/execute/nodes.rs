//! Nodes of a plan: roll a node to the release in batches, place each new
//! container on the grid, ship its image to that server, boot it and wait
//! for its health check. May touch: the engines through launch and fleet.

use super::*;

impl Execution<'_> {
    /// Roll `node` over to `release`: all at once, or `deploy.batch`
    /// containers at a time. Each batch boots beside the old containers and
    /// takes over their share of the route; the old ones keep running until
    /// the whole node is done, so a failing batch routes back to them.
    pub(super) async fn deploy_node(
        &mut self,
        node: &str,
        release: u32,
        scale: u32,
        network: &str,
        found: &[Found],
    ) -> Result<(), DeployError> {
        let web = self.stack.manifest.nodes[node].kind == NodeKind::Web;
        let batch = self
            .stack
            .manifest
            .deploy
            .batch
            .unwrap_or(scale)
            .clamp(1, scale.max(1));
        let batches = scale.div_ceil(batch);
        let old: Vec<Found> = found
            .iter()
            .filter(|c| c.node == node && c.service.is_none())
            .cloned()
            .collect();
        for (n, first) in (1..=scale).step_by(batch as usize).enumerate() {
            let last = (first + batch - 1).min(scale);
            if batches > 1 {
                self.p.step(format!(
                    "Starting {node} {first}-{last} of {scale} (v{release}, batch {}/{batches})",
                    n + 1
                ));
            } else {
                self.p
                    .step(format!("Starting {node} x{scale} (v{release})"));
            }
            for index in first..=last {
                let temp = format!("{}.{node}.{index}.v{release}", self.app);
                self.boot(node, index, &temp, network).await?;
            }
            self.retire.extend(
                old.iter()
                    .filter(|c| (first..=last).contains(&c.index))
                    .cloned(),
            );
            // Every batch but the last switches now; the last one switches
            // with the rest of the plan.
            if web && n + 1 < batches as usize {
                self.switch_route(found).await?;
                self.routed = true;
            }
        }
        for c in old {
            if !self.retire.iter().any(|r| r.id == c.id) {
                self.retire.push(c);
            }
        }
        Ok(())
    }

    /// Pick the server for a new container of `node` (best fit, replicas
    /// spread, label constraints), through the grid.
    pub(super) async fn place(
        &mut self,
        group: &str,
        name: &str,
        memory: Option<u32>,
        labels: &crate::grid::Labels,
    ) -> Result<(crate::fleet::Server, bollard::Docker), DeployError> {
        use crate::grid::{GridError, SliceSpec};
        let d = self.d;
        if self.grid.is_none() {
            let config = crate::cloud::Config::load(&d.store)?;
            self.grid = Some(occupied_grid(d, config.grid.options()).await?.0);
        }
        let size = memory.map_or(DEFAULT_SLICE_MIB, u64::from);
        let mut slice = SliceSpec::new(format!("{name}@new"), group, size);
        slice.labels = labels.clone();
        let mut grown = false;
        let server = loop {
            let grid = self.grid.as_mut().expect("built above");
            match grid.place(std::slice::from_ref(&slice)) {
                Ok(placed) => {
                    break placed
                        .first()
                        .map(|p| p.block.to_string())
                        .ok_or(DeployError::PlacedNothing)?;
                }
                // Full: the grid asks for a server; the provider answers.
                Err(GridError::NoFit(nofit)) if !grown && nofit.event.is_some() => {
                    let event = nofit.event.clone().expect("checked");
                    let known: Vec<String> = grid.blocks().map(|b| b.id.clone()).collect();
                    let new = super::super::scale::grow(d, &event, &known, self.p)
                        .await
                        .map_err(|e| DeployError::Grow {
                            group: group.to_string(),
                            nofit: nofit.to_string(),
                            source: Box::new(e),
                        })?;
                    let mut block = crate::grid::Block::new(new.name.clone(), new.memory.max(1));
                    block.labels = new.labels.clone();
                    block.pinned = new.origin.is_none();
                    grid.add_block(block)?;
                    grown = true;
                }
                Err(source) => {
                    return Err(DeployError::Place {
                        group: group.to_string(),
                        source,
                    });
                }
            }
        };
        d.fleet
            .get(&server)
            .ok_or_else(|| DeployError::Vanished(server.clone()))
    }

    /// Put `image` (a release's or a service's) on another server's engine,
    /// the first time that server needs it: a buildpack app's release image
    /// is built there from its kept context (the stack travels once per
    /// server); any other image travels whole (docker save → load).
    pub(super) async fn ship_image(
        &self,
        server: &str,
        docker: &bollard::Docker,
        image: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        if let Some(done) =
            crate::buildpack::remote_build(d, self.app, image, docker, server, self.p).await?
        {
            self.p.detail(format!("on server {server}: {done}"));
        } else if crate::fleet::ensure_image(&d.docker, docker, image).await? {
            self.p.detail(format!("copied {image} to server {server}"));
        }
        Ok(())
    }

    /// Start one container of `node` and wait until it is ready.
    pub(super) async fn boot(
        &mut self,
        node: &str,
        index: u32,
        name: &str,
        network: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let def = &self.stack.manifest.nodes[node];
        let web = def.kind == NodeKind::Web;
        let group = format!("{}.{node}", self.app);
        let (server, docker) = self
            .place(&group, name, def.memory, &def.placement.labels)
            .await?;
        let mut spec = ContainerSpec {
            name: name.to_string(),
            image: self.release.image.clone(),
            app: self.app.to_string(),
            node: node.to_string(),
            index,
            release: self.release.number,
            env: self.node_env(Some(def), &server.name),
            command: def.command.clone(),
            memory: def.memory,
            publish_on: web.then(|| server.address.clone()),
            service_port: None,
            network: Some(network.to_string()),
            aliases: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::new(),
            restart: true,
        };
        spec.labels
            .insert(launch::LABEL_LINKS.to_string(), self.links(&server.name));
        // The name this container will take must be ours to take.
        let final_name = format!("{}.{node}.{index}", self.app);
        match launch::owner(&docker, &final_name).await {
            launch::NameOwner::Free => {}
            launch::NameOwner::Us(instance) if instance == d.instance => {}
            launch::NameOwner::Us(_) | launch::NameOwner::Foreign => {
                return Err(DeployError::NameTaken {
                    server: server.name.clone(),
                    message: launch::foreign_name(&final_name),
                });
            }
        }
        if server.name != crate::fleet::LOCAL {
            spec.network = Some(self.network_on(&server.name).await?);
            self.ship_image(&server.name, &docker, &self.release.image)
                .await?;
        }
        let id = launch::start(&docker, &d.instance, &spec).await?;
        self.started.push(Started {
            id: id.clone(),
            node: node.to_string(),
            docker: docker.clone(),
            booted_as: name.to_string(),
            final_name: format!("{}.{node}.{index}", self.app),
            address: None,
        });
        let label = format!("{node}.{index}");
        if web {
            let check = launch::ReadyCheck::from_manifest(def.healthcheck.as_ref());
            let host = match self.desired.nodes[node].domains.iter().next() {
                Some(first) => first.clone(),
                None => d.default_domain(self.app)?,
            };
            let addr = launch::wait_ready(&docker, &id, &host, &check)
                .await
                .map_err(|nr| not_ready(self.app, &label, nr, self.p))?;
            self.p.detail(format!("{label} answers on {addr}"));
            if let Some(s) = self.started.last_mut() {
                s.address = Some(addr);
            }
        } else {
            launch::wait_stays_up(&docker, &id, Duration::from_secs(2))
                .await
                .map_err(|nr| not_ready(self.app, &label, nr, self.p))?;
            self.p.detail(format!("{label} is running"));
        }
        Ok(())
    }
}
