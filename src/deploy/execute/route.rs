//! The switch: route every web node to its new containers (and the old
//! ones not retired), then stop the retired ones and give the new ones
//! their final names. May touch: nginx through route, the engines.

use super::*;

impl Execution<'_> {
    /// Route every web node to its containers as they will be after this
    /// change: the new ones, and the old ones that are not retired.
    pub(super) async fn switch_route(&mut self, found: &[Found]) -> Result<(), DeployError> {
        let d = self.d;
        let retired: BTreeSet<&str> = self.retire.iter().map(|c| c.id.as_str()).collect();
        let mut routes = Vec::new();
        let mut routed = BTreeMap::new();
        for (name, node) in &self.desired.nodes {
            if node.kind != NodeKind::Web || node.domains.is_empty() {
                continue;
            }
            let mut upstreams: Vec<_> = found
                .iter()
                .filter(|c| {
                    &c.node == name
                        && c.service.is_none()
                        && c.state == crate::launch::ContainerState::Running
                        && !retired.contains(c.id.as_str())
                })
                .filter(|c| c.is_steady())
                .filter_map(|c| c.address)
                .collect();
            upstreams.extend(
                self.started
                    .iter()
                    .filter(|s| &s.node == name)
                    .filter_map(|s| s.address),
            );
            routes.push(NodeRoute {
                node: name.clone(),
                domains: node.domains.iter().cloned().collect(),
                upstreams,
            });
            routed.insert(name.clone(), node.domains.clone());
        }
        self.p.step("Routing");
        // From the check until routed.json says so, no other app may route.
        let _routing = d.routing.lock().await;
        let wanted: BTreeSet<String> = routes
            .iter()
            .flat_map(|r| r.domains.iter().map(|d| d.to_string()))
            .collect();
        let claims = crate::domains::claims(&d.store, &d.root_domain, self.app)?;
        crate::domains::check(self.app, &d.root_domain, &wanted, &claims, true).map_err(
            |source| DeployError::RoutingRefused {
                app: self.app.to_string(),
                source,
            },
        )?;
        d.router
            .set_app(self.app, &routes)
            .await
            .map_err(|source| DeployError::RoutingFailed {
                app: self.app.to_string(),
                source,
            })?;
        for r in &routes {
            self.p.detail(format!(
                "{} → {} container(s)",
                r.domains.join(", "),
                r.upstreams.len()
            ));
        }
        store::write_json(
            &d.store.app_dir(self.app).join("routed.json"),
            &routed,
            0o644,
        )?;
        Ok(())
    }

    /// Stop what the route no longer uses, then give new containers their names.
    pub(super) async fn retire_old(&mut self) {
        let d = self.d;
        if !self.retire.is_empty() {
            self.p
                .step(format!("Stopping {} old container(s)", self.retire.len()));
            let grace = self.stack.manifest.deploy.drain as i32;
            let jobs = self.retire.iter().map(|c| async move {
                launch::remove(&d.docker_on(&c.server), &c.id, grace).await
            });
            for r in futures_util::future::join_all(jobs).await {
                if let Err(e) = r {
                    self.p.warn(e.to_string());
                }
            }
        }
        for s in self.started.iter().filter(|s| s.booted_as != s.final_name) {
            if let Err(e) = launch::rename(&s.docker, &s.id, &s.final_name).await {
                self.p.warn(e.to_string());
            }
        }
    }
}
