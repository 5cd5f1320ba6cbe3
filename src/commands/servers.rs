//! `servers`, `servers:info`, `servers:add`, `servers:drain`, `servers:remove`, `grid`, `stacks`: the fleet.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct ServerView {
    name: String,
    docker: String,
    address: String,
    state: &'static str,
    memory_mib: u64,
    labels: BTreeMap<String, String>,
    engine: Option<String>,
    os: Option<String>,
    cpus: Option<i64>,
    /// Containers of this Quarry on it now.
    containers: usize,
    /// Whether the engine is reached over TLS.
    tls: bool,
    /// The provider that made it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<crate::fleet::Origin>,
    /// How the engine is reached: `unix`, `tcp+tls`, `tcp` or `ssh`.
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<SshView>,
}

#[derive(Serialize)]
pub(super) struct SshView {
    /// `user@host:port`.
    target: String,
    host_key: Option<String>,
    /// Why the session is down (or the server held), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    provisioned: BTreeMap<String, crate::provision::Ran>,
}

fn ssh_view(d: &Daemon, s: &crate::fleet::Server) -> Option<SshView> {
    let t = s.ssh.as_ref()?;
    let link = d.fleet.link(&s.name);
    Some(SshView {
        target: t.display(),
        host_key: t
            .host_key
            .as_deref()
            .and_then(|k| crate::remote::parse_host_key(k).ok())
            .map(|k| crate::remote::fingerprint(&k)),
        error: link
            .as_ref()
            .and_then(|l| l.held().or_else(|| l.last_error().map(|e| e.to_string()))),
        provisioned: s.provisioned.clone(),
    })
}

pub(super) async fn server_views(d: &Daemon) -> Result<Vec<ServerView>, Fail> {
    let containers = d.containers(None).await.map_err(fail)?;
    Ok(d.fleet
        .list()
        .into_iter()
        .map(|s| ServerView {
            ssh: ssh_view(d, &s),
            transport: match (&s.ssh, &s.tls, s.docker.starts_with("tcp://")) {
                (Some(_), _, _) => "ssh",
                (None, Some(_), _) => "tcp+tls",
                (None, None, true) => "tcp",
                (None, None, false) => "unix",
            },
            containers: containers.iter().filter(|c| c.server == s.name).count(),
            tls: s.tls.is_some(),
            origin: s.origin,
            state: s.state.as_str(),
            engine: s.facts.engine,
            os: s.facts.os,
            cpus: s.facts.cpus,
            memory_mib: s.memory,
            labels: s.labels,
            name: s.name,
            docker: s.docker,
            address: s.address,
        })
        .collect())
}

pub(super) async fn servers(
    d: &Daemon,
    key: &KeyRecord,
    name: Option<String>,
    json: bool,
    out: &Output,
) -> Res {
    require_admin(key, "viewing servers")?;
    let mut views = server_views(d).await?;
    if let Some(n) = &name {
        views.retain(|v| &v.name == n);
        let Some(v) = views.first() else {
            return Err(CommandError::NotFound(format!("no server named {n}")));
        };
        if json {
            print_json(out, v).await;
        } else {
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.out(format!(
                "name:       {}\ndocker:     {}{}\nprovider:   {}\naddress:    {}\nstate:      {}\nmemory:     {} MiB\nlabels:     {}\nengine:     {}\nos:         {}\ncpus:       {}\ncontainers: {}\n",
                v.name,
                v.docker,
                if v.tls {
                    " (TLS)"
                } else if v.docker.starts_with("tcp://") {
                    " (no TLS: --insecure)"
                } else {
                    ""
                },
                v.origin.as_ref().map_or("- (added by hand)".to_string(), |o| format!(
                    "{} (id {}{})",
                    o.provider,
                    o.id,
                    o.size.as_ref().map_or(String::new(), |s| format!(", size {s}"))
                )),
                v.address,
                v.state,
                v.memory_mib,
                if labels.is_empty() { "-".into() } else { labels.join(", ") },
                v.engine.as_deref().unwrap_or("-"),
                v.os.as_deref().unwrap_or("-"),
                v.cpus.map_or("-".into(), |c| c.to_string()),
                v.containers,
            ))
            .await;
            if let Some(ssh) = &v.ssh {
                let mut text = format!(
                    "ssh:        {} (host key {})\n",
                    ssh.target,
                    ssh.host_key.as_deref().unwrap_or("-")
                );
                if let Some(e) = &ssh.error {
                    text.push_str(&format!("error:      {e}\n"));
                }
                for (name, r) in &ssh.provisioned {
                    text.push_str(&format!(
                        "provisioned {name}: sha1 {} {} at {}\n",
                        r.sha1,
                        if r.ok { "ok" } else { "FAILED" },
                        r.at
                    ));
                }
                out.out(text).await;
            }
        }
        return Ok(());
    }
    let header = [
        "SERVER",
        "STATE",
        "ADDRESS",
        "MEMORY",
        "CONTAINERS",
        "DOCKER",
    ];
    show(out, json, &views, None, &header, |v| {
        vec![
            v.name.clone(),
            v.state.to_string(),
            v.address.clone(),
            format!("{} MiB", v.memory_mib),
            v.containers.to_string(),
            match &v.ssh {
                Some(ssh) => format!("ssh://{}", ssh.target),
                None => v.docker.clone(),
            },
        ]
    })
    .await;
    Ok(())
}

pub(super) async fn servers_add(
    d: &Daemon,
    key: &KeyRecord,
    mut new: command::NewServer,
    out: &Output,
) -> Res {
    require_admin(key, "adding servers")?;
    if let Some(target) = &new.ssh {
        super::remote::check_new_target(d, target)?;
        new.docker = format!(
            "unix://{}",
            crate::remote::bridge::socket_path(d.store.root(), &new.name).display()
        );
    }
    crate::fleet::check_new(&d.fleet, &new.name, &new.docker)
        .map_err(|e| CommandError::Conflict(e.to_string()))?;
    let provision = std::mem::take(&mut new.provision);
    let server = crate::fleet::register(&d.store, &d.fleet, new, None)
        .await
        .map_err(fail)?;
    super::network::after_fleet_change(d, out).await;
    let facts = &server.facts;
    out.out(format!(
        "added server {}: Docker {} on {}, {} CPUs, {} MiB for the grid{}\n",
        server.name,
        facts.engine.as_deref().unwrap_or("?"),
        facts.os.as_deref().unwrap_or("?"),
        facts.cpus.unwrap_or(0),
        server.memory,
        if server.tls.is_some() {
            ", over TLS".to_string()
        } else if server.insecure {
            ", without TLS (--insecure)".to_string()
        } else if let Some(t) = &server.ssh {
            format!(
                ", over SSH to {} (host key {})",
                t.display(),
                t.host_key
                    .as_deref()
                    .and_then(|k| crate::remote::parse_host_key(k).ok())
                    .map_or("?".to_string(), |k| crate::remote::fingerprint(&k))
            )
        } else {
            String::new()
        }
    ))
    .await;
    super::remote::after_add(d, &server, &provision, out).await
}

pub(super) fn require_server(d: &Daemon, name: &str) -> Res {
    match d.fleet.get(name) {
        Some(_) => Ok(()),
        None => Err(CommandError::NotFound(format!("no server named {name}"))),
    }
}

/// This instance's containers on server `name`.
pub(super) async fn containers_on(d: &Daemon, name: &str) -> Result<Vec<launch::Found>, Fail> {
    let all = d.containers(None).await.map_err(fail)?;
    Ok(all.into_iter().filter(|c| c.server == name).collect())
}

/// Move every container off `name` (new ones boot elsewhere, routes switch,
/// then the old ones stop), app by app.
pub(super) async fn servers_drain(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "draining servers")?;
    require_server(d, name)?;
    with_progress(out, |p| async move { deploy::drain(d, name, &p).await })
        .await
        .map_err(fail)?;
    out.out(format!(
        "{name} is drained: it holds no containers and takes no new ones\n"
    ))
    .await;
    Ok(())
}

pub(super) async fn servers_remove(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "removing servers")?;
    require_server(d, name)?;
    let held = containers_on(d, name).await?.len();
    if held > 0 {
        return Err(CommandError::Conflict(format!(
            "{name} still holds {held} container(s); move them first with servers:drain {name}"
        )));
    }
    // Services that waited for it (it does not answer) start elsewhere now.
    let mut moving = Vec::new();
    for app in d.store.apps().map_err(io)? {
        if let Some(stack) = d
            .store
            .live_release(&app)
            .map_err(io)?
            .and_then(|r| stack::from_release(&r).ok())
        {
            for (service, _) in deploy::waiting_services(d, &app, &stack)
                .into_iter()
                .filter(|(_, at)| at == name)
            {
                moving.push(format!("{app}.{service}"));
            }
        }
    }
    super::remote::before_remove(d, name, out).await;
    let leaving = d.fleet.get(name);
    d.fleet
        .remove(&d.store, name)
        .map_err(|e| CommandError::Conflict(e.to_string()))?;
    if let Some((server, docker)) = leaving {
        crate::lockdown::forget(&d.store, &d.docker, server, docker).await;
    }
    super::network::after_fleet_change(d, out).await;
    out.out(format!("removed server {name}\n")).await;
    super::remote::sync_hosts(d, out).await;
    if !moving.is_empty() {
        out.out(format!(
            "services {} start on other servers with empty volumes; their data stays on {name}\n",
            moving.join(", ")
        ))
        .await;
    }
    Ok(())
}

/// The allocation of every node container (a slice) onto the servers
/// (blocks), written to `grid/grid.json`.
pub(super) async fn grid(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "viewing the grid")?;
    let (grid, warnings) = deploy::persist_grid(d).await.map_err(fail)?;
    for w in warnings {
        out.err(format!("quarry: warning: {w}\n")).await;
    }
    if json {
        print_json(out, &grid).await;
    } else {
        out.out(grid.table()).await;
    }
    Ok(())
}

/// The stack images on the HQ's engine.
pub(super) async fn stacks(d: &Daemon, json: bool, out: &Output) -> Res {
    let list = crate::stackimage::list(&d.docker).await.map_err(fail)?;
    show(
        out,
        json,
        &list,
        Some(format!(
            "no stack images yet: the first buildpack push builds {}",
            crate::stackimage::configured()
        )),
        &["STACK", "ID", "SIZE"],
        |s| {
            vec![
                s.name.clone(),
                s.id.clone(),
                format!("{} MB", s.size / 1_000_000),
            ]
        },
    )
    .await;
    Ok(())
}
