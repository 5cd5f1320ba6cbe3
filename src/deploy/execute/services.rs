//! Services of a plan: boot the ones that are missing or changed (building
//! their image when they have a `build:` folder), keep the ones that match.
//! May touch: the engines through launch.

use super::*;

impl Execution<'_> {
    pub(super) async fn ensure(
        &mut self,
        service: &str,
        image: &str,
        spec_hash: &str,
        network: &str,
        found: &[Found],
    ) -> Result<(), String> {
        let d = self.d;
        let def = &self.stack.manifest.services[service];
        if let Some(c) = found.iter().find(|c| c.service.as_deref() == Some(service))
            && c.spec.as_deref() == Some(spec_hash)
            && c.state == crate::launch::ContainerState::Running
            && d.server_running(&c.server)
            && def.port.is_none_or(|_| {
                let published = self
                    .services
                    .get(service)
                    .is_some_and(|at| at.published.is_some());
                published == self.published_needed(&c.server)
            })
        {
            let network = if c.server == crate::fleet::LOCAL {
                network.to_string()
            } else {
                self.network_on(&c.server).await?
            };
            let aliases = [launch::service_host(self.app, service)];
            return launch::attach(&d.docker_on(&c.server), &c.id, &network, &aliases)
                .await
                .map_err(String::from);
        }
        // A service stays on its server (its volumes live there); a new one,
        // or one the operator moves off its server, is placed by the grid;
        // one whose server does not answer waits for it if it has data.
        let old = found
            .iter()
            .find(|c| c.service.as_deref() == Some(service))
            .cloned();
        let home = homes::read(&d.store, self.app).remove(service);
        let (server, docker) = match old.as_ref().filter(|c| d.server_running(&c.server)) {
            Some(c) => d
                .fleet
                .get(&c.server)
                .ok_or_else(|| format!("server {} vanished", c.server))?,
            None => {
                let state = home
                    .as_ref()
                    .map(|h| d.fleet.get(&h.server).map(|(s, _)| s.state));
                match homes::placement(!def.volumes.is_empty(), state) {
                    homes::Placement::Wait => {
                        let home = home.expect("only a recorded service waits");
                        self.p.warn(homes::degraded_line(service, &home.server));
                        self.services.insert(
                            service.to_string(),
                            ServiceAt {
                                server: home.server,
                                published: home.published,
                            },
                        );
                        return Ok(());
                    }
                    homes::Placement::Home => {
                        let at = &home.as_ref().expect("only a recorded one").server;
                        d.fleet
                            .get(at)
                            .ok_or_else(|| format!("server {at} vanished"))?
                    }
                    homes::Placement::Anywhere => {
                        let group = format!("{}.{service}", self.app);
                        self.place(&group, &group, def.memory, &def.placement.labels)
                            .await?
                    }
                }
            }
        };
        self.p.step(format!("Starting service {service} ({image})"));
        if let crate::manifest::ServiceSource::Build(dir) = &def.source {
            self.build_service(dir, image).await?;
        }
        if let Some(c) = old.as_ref().filter(|c| c.server != server.name) {
            let _ = launch::remove(&d.docker_on(&c.server), &c.id, 10).await;
        }
        let was_on = old
            .map(|c| c.server)
            .or(home.map(|h| h.server))
            .filter(|s| *s != server.name);
        if let Some(was_on) = was_on
            && !def.volumes.is_empty()
        {
            let moved = format!(
                "service {service} moved from server {was_on} to {}: it starts with empty volumes; the old data stays on {was_on} (see volumes {})",
                server.name, self.app
            );
            self.p.warn(&moved);
            d.store.audit_system(self.app, "moved", &moved);
        }
        let local = server.name == crate::fleet::LOCAL;
        let network = if local {
            network.to_string()
        } else {
            self.ship_image(&server.name, &docker, image).await?;
            self.network_on(&server.name).await?
        };
        let name = format!("{}.{service}", self.app);
        let volumes = def
            .volumes
            .iter()
            .enumerate()
            .map(|(i, path)| (launch::volume_name(self.app, service, i + 1), path.clone()))
            .collect();
        let spec = ContainerSpec {
            name: name.clone(),
            image: image.to_string(),
            app: self.app.to_string(),
            node: service.to_string(),
            index: 0,
            release: 0,
            env: def.env.clone(),
            command: def.command.clone(),
            memory: def.memory,
            // Published on its server's address only for nodes on other servers.
            publish_on: def
                .port
                .filter(|_| self.published_needed(&server.name))
                .map(|_| server.address.clone()),
            service_port: def.port,
            network: Some(network.clone()),
            aliases: vec![launch::service_host(self.app, service)],
            volumes,
            labels: BTreeMap::from([
                (launch::LABEL_SERVICE.to_string(), service.to_string()),
                (launch::LABEL_SPEC.to_string(), spec_hash.to_string()),
            ]),
            restart: true,
        };
        let id = launch::start(&docker, &d.instance, &spec).await?;
        let published = match def.port {
            Some(port) => launch::published(&docker, &id, port).await?,
            None => None,
        };
        if let Some(port) = def.port {
            let at = if local { None } else { published };
            launch::wait_tcp_ready(&docker, &id, &network, port, at, Duration::from_secs(60))
                .await
                .map_err(|nr| not_ready(self.app, service, nr, self.p))?;
            self.p.detail(format!(
                "{service} accepts connections on port {port} (server {})",
                server.name
            ));
        }
        homes::record(
            &d.store,
            self.app,
            service,
            homes::Home {
                server: server.name.clone(),
                published,
            },
        );
        self.services.insert(
            service.to_string(),
            ServiceAt {
                server: server.name.clone(),
                published,
            },
        );
        Ok(())
    }

    pub(super) async fn build_service(&self, dir: &str, image: &str) -> Result<(), String> {
        let d = self.d;
        let app_dir = d.store.app_dir(self.app);
        let (src, rel, app) = (app_dir.join("src"), dir.to_string(), self.app.to_string());
        // The checkout is the pushed tree: walked without following a link,
        // so a `build:` folder that is (or holds) a symlink cannot put a
        // host folder into the context.
        let context = tokio::task::spawn_blocking(move || -> Result<std::fs::File, String> {
            let spool = tempfile::tempfile_in(&app_dir).map_err(|e| e.to_string())?;
            let mut out = std::io::BufWriter::new(spool);
            crate::confined::tar_dir(&src, &rel, &mut out, receive::max_tree_bytes())
                .map_err(|e| e.to_string())?;
            let mut file = out.into_inner().map_err(|e| e.to_string())?;
            std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
            let path = format!("{rel}/Dockerfile");
            let dockerfile = crate::confined::read_file(&src, &path, 1 << 20)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            crate::build::images::check_dockerfile(
                &app,
                &path,
                &String::from_utf8_lossy(&dockerfile),
            )?;
            Ok(file)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("service build directory {dir}: {e}"))?;
        let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
        let _building = d.builds.building().await;
        build::build_dockerfile(
            &d.docker,
            self.app,
            build::Context::File(context),
            image,
            labels,
            self.p,
            build::deadline(self.stack.manifest.build.timeout),
        )
        .await
        .map(|_| ())
        .map_err(String::from)
    }
}
