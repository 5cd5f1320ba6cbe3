//! Connecting to one Docker engine (a unix socket, plain TCP or TCP with
//! TLS client files) and reading its facts. May touch: that engine.

use bollard::Docker;

use super::{Facts, FleetError, TlsFiles};
use crate::launch::docker_message;

/// Connect to an engine and negotiate the API version.
pub async fn connect(endpoint: &str, tls: Option<&TlsFiles>) -> Result<Docker, FleetError> {
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        if tls.is_some() {
            return Err(FleetError::TlsNotTcp {
                endpoint: endpoint.to_string(),
            });
        }
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else if let (Some(t), true) = (tls, endpoint.starts_with("tcp://")) {
        for (what, path) in [
            ("--tls-ca", &t.ca),
            ("--tls-cert", &t.cert),
            ("--tls-key", &t.key),
        ] {
            if !path.is_file() {
                return Err(FleetError::NoFile {
                    what,
                    path: path.clone(),
                });
            }
        }
        Docker::connect_with_ssl(
            endpoint,
            &t.key,
            &t.cert,
            &t.ca,
            120,
            bollard::API_DEFAULT_VERSION,
        )
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(FleetError::Unsupported {
            endpoint: endpoint.to_string(),
        });
    };
    let no_answer = |e: bollard::errors::Error| FleetError::NoAnswer {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    };
    docker
        .map_err(no_answer)?
        .negotiate_version()
        .await
        .map_err(no_answer)
}

/// Engine version, CPUs, memory, OS.
pub async fn facts(docker: &Docker) -> Result<Facts, FleetError> {
    let info = docker.info().await.map_err(|e| FleetError::Facts {
        reason: docker_message(&e),
    })?;
    Ok(Facts {
        engine: info.server_version,
        os: info.operating_system,
        cpus: info.ncpu,
        memory_mib: info.mem_total.map(|b| b as u64 / (1024 * 1024)),
    })
}
