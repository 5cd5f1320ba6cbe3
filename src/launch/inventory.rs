//! The engine's containers: removal, names (who holds one, renames),
//! the instance's containers by label, network attachment, run-to-completion
//! release commands, exit codes, and the engine's error words.
//! May touch: the engine.

use super::*;

/// Stop (SIGTERM, then SIGKILL after `grace` seconds) and remove a container.
/// A container that is already gone is not an error.
pub async fn remove(docker: &Docker, id_or_name: &str, grace: i32) -> Result<(), LaunchError> {
    if grace > 0 {
        let options = StopContainerOptionsBuilder::default().t(grace).build();
        let _ = docker.stop_container(id_or_name, Some(options)).await;
    }
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    match docker.remove_container(id_or_name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(LaunchError::Remove {
            container: id_or_name.to_string(),
            message: docker_message(&e),
        }),
    }
}

/// Who holds a container name on an engine.
#[derive(Debug, PartialEq, Eq)]
pub enum NameOwner {
    Free,
    /// A Quarry container, with its instance label.
    Us(String),
    /// A container Quarry did not make.
    Foreign,
}

pub async fn owner(docker: &Docker, name: &str) -> NameOwner {
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(info) => match info
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(LABEL_INSTANCE).cloned())
        {
            Some(instance) => NameOwner::Us(instance),
            None => NameOwner::Foreign,
        },
        Err(_) => NameOwner::Free,
    }
}

/// The refusal when a name Quarry needs is taken by someone else.
pub fn foreign_name(name: &str) -> String {
    format!(
        "a container named {name} exists on the engine and Quarry did not create it (or another Quarry did); rename or remove it, or use another app name"
    )
}

/// Give a container its steady-state name.
pub async fn rename(docker: &Docker, id: &str, name: &str) -> Result<(), LaunchError> {
    let options = RenameContainerOptionsBuilder::default().name(name).build();
    docker
        .rename_container(id, options)
        .await
        .map_err(|e| LaunchError::Rename {
            name: name.to_string(),
            message: docker_message(&e),
        })
}

/// Every container of this instance (of one app when `app` is given).
pub async fn list(
    docker: &Docker,
    instance: &str,
    app: Option<&str>,
) -> Result<Vec<Found>, LaunchError> {
    let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
    if let Some(app) = app {
        labels.push(format!("{LABEL_APP}={app}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| LaunchError::List {
            message: docker_message(&e),
        })?;
    let mut out = Vec::new();
    for s in summaries {
        let labels = s.labels.unwrap_or_default();
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let address = s.ports.unwrap_or_default().into_iter().find_map(|p| {
            if p.private_port != CONTAINER_PORT {
                return None;
            }
            let ip =
                p.ip.filter(|i| !i.is_empty() && i != "0.0.0.0")
                    .unwrap_or_else(|| "127.0.0.1".into());
            format!("{ip}:{}", p.public_port?).parse().ok()
        });
        if labels.contains_key(LABEL_ONEOFF) {
            continue;
        }
        out.push(Found {
            id: s.id.unwrap_or_default(),
            name: s
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            app: get(LABEL_APP),
            node: get(LABEL_NODE),
            index: get(LABEL_INDEX).parse().unwrap_or(0),
            release: get(LABEL_RELEASE).parse().unwrap_or(0),
            state: ContainerState::parse(&s.state.map(|st| st.to_string()).unwrap_or_default()),
            status: s.status.unwrap_or_default(),
            address,
            service: labels.get(LABEL_SERVICE).cloned(),
            spec: labels.get(LABEL_SPEC).cloned(),
            links: labels.get(LABEL_LINKS).cloned(),
            server: crate::endpoint::LOCAL.to_string(),
        });
    }
    out.sort_by(|a, b| {
        (&a.app, &a.node, a.index, a.release).cmp(&(&b.app, &b.node, b.index, b.release))
    });
    Ok(out)
}

/// Join the running container `id` to `network` (an id) with `aliases`,
/// unless it is on it already: a service started before networks were per
/// app keeps running and its data, and is reached on the app's network.
pub async fn attach(
    docker: &Docker,
    id: &str,
    network: &str,
    aliases: &[String],
) -> Result<(), LaunchError> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| LaunchError::Inspect {
            container: id.to_string(),
            message: docker_message(&e),
        })?;
    let joined = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .values()
        .any(|e| e.network_id.as_deref() == Some(network));
    if joined {
        return Ok(());
    }
    let request = bollard::models::NetworkConnectRequest {
        container: id.to_string(),
        endpoint_config: Some(bollard::models::EndpointSettings {
            aliases: Some(aliases.to_vec()),
            ..Default::default()
        }),
    };
    docker
        .connect_network(network, request)
        .await
        .map_err(|e| LaunchError::Attach {
            container: id.to_string(),
            message: docker_message(&e),
        })
}

/// Run a one-off container to completion (a release command): exit code and output.
pub async fn run_once(
    docker: &Docker,
    instance: &str,
    spec: &ContainerSpec,
    deadline: Duration,
) -> Result<(i64, Vec<String>), LaunchError> {
    let id = start(docker, instance, spec).await?;
    let code = match tokio::time::timeout(deadline, exit_code(docker, &id)).await {
        Ok(code) => code,
        Err(_) => {
            let logs = tail_logs(docker, &id, 20).await;
            let _ = remove(docker, &id, 0).await;
            return Err(LaunchError::NotFinished {
                secs: deadline.as_secs(),
                logs,
            });
        }
    };
    let logs = tail_logs(docker, &id, 50).await;
    let _ = remove(docker, &id, 0).await;
    Ok((code, logs))
}

/// The exit code of container `id` once it stops (-1 if the engine does not say).
pub async fn exit_code(docker: &Docker, id: &str) -> i64 {
    let mut stream =
        docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
    match stream.next().await {
        Some(Ok(r)) => r.status_code,
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        _ => -1,
    }
}

/// The engine's own words, without bollard's wrapping.
pub fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
