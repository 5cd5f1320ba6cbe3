//! Services' names and volumes: the DNS name a service answers to, its
//! volumes (created with labels, mounted only when the labels match),
//! listing and removal. May touch: the engine (volumes).

use super::*;

/// The DNS name a service answers to for the app's containers.
pub fn service_host(app: &str, service: &str) -> String {
    format!("{service}.{app}")
}

/// The volume of `app`'s service `service` mounted `n`th: `.` joins the
/// parts, which no app or service name can contain, so no two apps' volumes
/// share a name.
pub fn volume_name(app: &str, service: &str, n: usize) -> String {
    format!("quarry.{app}.{service}.{n}")
}

/// Make sure the volume `name` ([`volume_name`]) exists and is this app's and
/// this service's; returns the name to mount. A volume of an older Quarry
/// (`quarry-<app>-<service>-<n>`) is mounted instead when its labels say it
/// is this service's, so upgrades keep their data.
pub(super) async fn ensure_volume(
    docker: &Docker,
    instance: &str,
    app: &str,
    service: &str,
    name: &str,
) -> Result<String, LaunchError> {
    let owner = |v: &bollard::models::Volume| {
        let get = |k: &str| v.labels.get(k).cloned().unwrap_or_default();
        (get(LABEL_INSTANCE), get(LABEL_APP), get(LABEL_SERVICE))
    };
    let want = (instance.to_string(), app.to_string(), service.to_string());
    let check = |v: &bollard::models::Volume| {
        let have = owner(v);
        if have == want {
            Ok(())
        } else {
            Err(LaunchError::ForeignVolume {
                name: name.to_string(),
                app: app.to_string(),
                service: service.to_string(),
                have_app: have.1,
                have_service: have.2,
            })
        }
    };
    if let Ok(v) = docker.inspect_volume(name).await {
        check(&v)?;
        return Ok(name.to_string());
    }
    let legacy = name.replace('.', "-");
    if let Ok(v) = docker.inspect_volume(&legacy).await
        && owner(&v) == want
    {
        return Ok(legacy);
    }
    let request = bollard::models::VolumeCreateRequest {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_SERVICE.to_string(), service.to_string()),
        ])),
        ..Default::default()
    };
    // Creating a volume that exists returns it unchanged: the labels tell
    // whether it is ours (someone may have made it since the inspect).
    let v = docker
        .create_volume(request)
        .await
        .map_err(|e| LaunchError::CreateVolume {
            name: name.to_string(),
            message: docker_message(&e),
        })?;
    check(&v)?;
    Ok(name.to_string())
}

/// Volumes of this instance (of one app when given).
/// A named volume of a service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub app: String,
    pub service: String,
}

pub async fn volumes(
    docker: &Docker,
    instance: &str,
    app: Option<&str>,
) -> Result<Vec<VolumeInfo>, LaunchError> {
    let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
    if let Some(app) = app {
        labels.push(format!("{LABEL_APP}={app}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let list = docker
        .list_volumes(Some(options))
        .await
        .map_err(|e| LaunchError::Volumes {
            message: docker_message(&e),
        })?;
    let mut out: Vec<VolumeInfo> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| VolumeInfo {
            app: v.labels.get(LABEL_APP).cloned().unwrap_or_default(),
            service: v.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
            name: v.name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub async fn remove_volume(docker: &Docker, name: &str) -> Result<(), LaunchError> {
    docker
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .map_err(|e| LaunchError::RemoveVolume {
            name: name.to_string(),
            message: docker_message(&e),
        })
}
