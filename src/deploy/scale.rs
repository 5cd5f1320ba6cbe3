//! Growing and shrinking the fleet through the provider (config.yml
//! `grid:` and `provider:`): a container that fits nowhere asks for a new
//! server of the smallest fitting size, which is registered before the
//! placement is retried; the provider's servers that stayed empty for
//! `grid.idle` seconds while the fleet is above `grid.min` are given back.
//! May touch: the provider (through `cloud`), the fleet, the grid snapshot.

use super::*;
use crate::cloud::{AddRequest, Provider, choose_size, next_name};
use crate::config::Config;
use crate::fleet::{self, Origin, Server, ServerState};
use crate::grid::Event;
use std::sync::atomic::Ordering;

/// The grid asked for a server (`create`): get one from the provider,
/// register it (connect, facts) and return it. Any failure is the deploy's
/// failure, in the provider's words; a machine that was added but cannot be
/// registered is given back.
pub async fn grow(
    d: &Daemon,
    event: &Event,
    known: &[String],
    p: &Progress,
) -> Result<Server, DeployError> {
    let Event::Create { size, labels } = event else {
        return Err(DeployError::NoCreateEvent);
    };
    let _busy = d.cloud.busy.lock().await;
    // Another deploy may have grown the fleet while this one waited: a new
    // running server that fits answers the event as well.
    if let Some(s) = d.fleet.list().into_iter().find(|s| {
        !known.contains(&s.name)
            && s.state == ServerState::Running
            && s.memory >= *size
            && crate::grid::carries(&s.labels, labels)
    }) {
        p.detail(format!("server {} was just added: using it", s.name));
        return Ok(s);
    }
    let config = Config::load(&d.store)?;
    let provider = config.provider();
    let kind = provider.kind();
    let with = if labels.is_empty() {
        String::new()
    } else {
        format!(" with {}", crate::grid::show_labels(labels))
    };
    p.step(format!(
        "The grid is full: asking provider {kind} for a server of {size} MiB{with}"
    ));
    // Scripts that are not there fail now, before a machine is rented.
    for name in config.provision() {
        crate::provision::read(d.store.root(), name).map_err(DeployError::ProvisionScript)?;
    }
    provider.ping().await?;
    let sizes = provider.sizes().await?;
    let chosen = choose_size(&sizes, *size).map_err(|source| DeployError::Size {
        kind: kind.to_string(),
        source,
    })?;
    let taken: Vec<String> = d.fleet.list().into_iter().map(|s| s.name).collect();
    let request = AddRequest {
        name: next_name(&taken),
        size: chosen.name.clone(),
        memory: *size,
        labels: labels.clone(),
    };
    let started = Instant::now();
    let machine = provider.add(&request).await?;
    let bridge = crate::remote::bridge::socket_path(d.store.root(), &request.name);
    let new = match crate::cloud::answer::new_server(
        kind,
        &machine,
        &request,
        chosen,
        &bridge,
        config.provision(),
    ) {
        Ok(new) => new,
        Err(source) => {
            let _ = provider.remove(&machine.id, &request.name).await;
            return Err(DeployError::NewServer {
                machine: machine.id.clone(),
                source,
            });
        }
    };
    let provision = new.provision.clone();
    if new.ssh.is_none() && !config.provision().is_empty() {
        p.warn(format!(
            "provider {kind} answered a Docker endpoint for {}: provider.provision runs only on servers reached over SSH",
            request.name
        ));
    }
    let origin = Origin {
        provider: kind.to_string(),
        id: machine.id.clone(),
        size: Some(chosen.name.clone()),
    };
    let registered = match fleet::check_new(&d.fleet, &new.name, &new.docker) {
        Ok(()) => fleet::register(&d.store, &d.fleet, new, Some(origin)).await,
        Err(e) => Err(e),
    };
    let registered = match registered {
        Ok(server) if !provision.is_empty() => {
            // Provisioned before it takes containers; a failure gives it back.
            match fleet::provision_reporting(&d.store, &d.fleet, &server.name, &provision, p).await
            {
                Ok(_) => d
                    .fleet
                    .get(&server.name)
                    .map(|(s, _)| s)
                    .ok_or_else(|| DeployError::LeftFleet(server.name.clone())),
                Err(e) => {
                    if let Err(e) = d.fleet.give_back(&d.store, &server.name) {
                        tracing::warn!("{e}");
                    }
                    let _ = provider.remove(&machine.id, &request.name).await;
                    d.store.audit_fleet(
                        "servers:add failed",
                        &format!(
                            "{} by provider {kind} (id {}): {e}",
                            server.name, machine.id
                        ),
                    );
                    return Err(DeployError::Provision(e.given_back(&machine.id)));
                }
            }
        }
        other => other.map_err(DeployError::from),
    };
    match registered {
        Ok(server) => {
            crate::lockdown::refresh(&d.store, &d.fleet, &d.docker).await;
            for w in crate::hosts::sync(&d.fleet).await {
                p.warn(w);
            }
            p.detail(format!(
                "added server {} ({}, {} MiB, {}) in {:.1}s",
                server.name,
                chosen.name,
                server.memory,
                server.docker,
                started.elapsed().as_secs_f64()
            ));
            d.store.audit_fleet(
                "servers:add",
                &format!(
                    "{} by provider {kind} (id {}, size {})",
                    server.name, machine.id, chosen.name
                ),
            );
            Ok(server)
        }
        Err(e) => {
            let _ = provider.remove(&machine.id, &request.name).await;
            Err(DeployError::Unusable {
                kind: kind.to_string(),
                machine: machine.id.clone(),
                source: Box::new(e),
            })
        }
    }
}

/// Remove the provider's servers that have been empty for `grid.idle`
/// seconds while the fleet is above `grid.min` (the grid's `destroy`
/// events). Returns the servers removed.
pub async fn shrink(d: &Daemon) -> Result<Vec<String>, DeployError> {
    let config = Config::load(&d.store)?;
    if !config.grid.autosize || d.cloud.rollouts.load(Ordering::SeqCst) > 0 {
        return Ok(Vec::new());
    }
    let (grid, _) = crate::deploy::occupied_grid(d, config.grid.options()).await?;
    let wanted: Vec<String> = grid
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Destroy { block } => Some(block),
            Event::Create { .. } => None,
        })
        .collect();
    let idle = Duration::from_secs(config.grid.idle);
    let ripe: Vec<(Server, Origin)> = {
        let mut since = d.cloud.empty_since.lock().expect("cloud");
        since.retain(|name, _| wanted.contains(name));
        let now = Instant::now();
        wanted
            .iter()
            .filter_map(|name| {
                let (server, _) = d.fleet.get(name)?;
                let origin = server.origin.clone()?;
                let first = *since.entry(name.clone()).or_insert(now);
                (now.duration_since(first) >= idle).then_some((server, origin))
            })
            .collect()
    };
    let mut removed = Vec::new();
    if ripe.is_empty() {
        return Ok(removed);
    }
    let _busy = d.cloud.busy.lock().await;
    let provider = config.provider();
    for (server, origin) in ripe {
        // Look again under the lock: a deploy may have just placed something.
        if d.cloud.rollouts.load(Ordering::SeqCst) > 0 {
            break;
        }
        let held = d
            .containers(None)
            .await?
            .iter()
            .any(|c| c.server == server.name);
        if held {
            continue;
        }
        d.fleet
            .set_state(&d.store, &server.name, ServerState::Terminating)
            .ok();
        match provider.remove(&origin.id, &server.name).await {
            Ok(()) => {
                d.fleet.remove(&d.store, &server.name)?;
                d.cloud
                    .empty_since
                    .lock()
                    .expect("cloud")
                    .remove(&server.name);
                d.store.audit_fleet(
                    "servers:remove",
                    &format!(
                        "{} by provider {} (id {}): empty for {}s",
                        server.name, origin.provider, origin.id, config.grid.idle
                    ),
                );
                removed.push(server.name);
            }
            Err(e) => {
                tracing::warn!(server = %server.name, "{e}");
                d.fleet
                    .set_state(&d.store, &server.name, ServerState::Running)
                    .ok();
                d.cloud
                    .empty_since
                    .lock()
                    .expect("cloud")
                    .insert(server.name.clone(), Instant::now());
                d.store
                    .audit_fleet("servers:remove failed", &format!("{}: {e}", server.name));
            }
        }
    }
    if !removed.is_empty() {
        crate::lockdown::refresh(&d.store, &d.fleet, &d.docker).await;
    }
    Ok(removed)
}
