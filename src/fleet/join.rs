//! A server joining the fleet: first contact over SSH (the host key checked
//! or pinned, the Docker bridge started), TLS files kept under
//! `servers/<name>/tls/`, the engine's facts read, the record written.
//! May touch: `servers/<name>/`, the new server's engine and session.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::io;
use super::{
    Fleet, FleetError, NewServer, Origin, Server, ServerState, TlsFiles, check_transport, connect,
    facts,
};
use crate::remote::bridge::{self, Bridge};
use crate::remote::{Link, SshTarget};
use crate::store::Store;

/// First contact with a new SSH server: log in (checking `--host-key` when
/// given), pin the host key it shows, start its Docker bridge.
async fn join_ssh(
    store: &Store,
    name: &str,
    target: &SshTarget,
) -> Result<(SshTarget, (Arc<Link>, Bridge)), FleetError> {
    let hq = Arc::new(crate::remote::hq_key(store.root())?);
    let (link, _) = Link::first_contact(name, target, hq).await?;
    let pinned = link.target().clone();
    let link = Arc::new(link);
    let socket = bridge::socket_path(store.root(), name);
    let bridge = bridge::start(link.clone(), &socket).map_err(io(&socket))?;
    Ok((pinned, (link, bridge)))
}

/// The session and Docker bridge of a recorded SSH server (its host key
/// pinned); the session connects on first use. Held while a provisioner's
/// last run failed.
pub(super) fn start_link(
    store: &Store,
    server: &Server,
    target: &SshTarget,
) -> Result<(Arc<Link>, Bridge), FleetError> {
    let hq = Arc::new(crate::remote::hq_key(store.root())?);
    let link = Arc::new(Link::new(&server.name, target, hq)?);
    link.hold(crate::provision::failed(&server.provisioned));
    let socket = bridge::socket_path(store.root(), &server.name);
    let bridge = bridge::start(link.clone(), &socket).map_err(io(&socket))?;
    Ok((link, bridge))
}

/// Why `name` at `endpoint` cannot join the fleet: a name or an engine that is
/// there already.
pub fn check_new(fleet: &Fleet, name: &str, endpoint: &str) -> Result<(), FleetError> {
    for s in fleet.list() {
        if s.name == name {
            return Err(FleetError::Exists(name.to_string()));
        }
        if s.docker == endpoint {
            return Err(FleetError::Taken {
                endpoint: endpoint.to_string(),
                server: s.name,
            });
        }
    }
    Ok(())
}

/// Add a server to the fleet: connect (TLS files are copied under
/// `servers/<name>/tls/` first), negotiate the API version, read its facts,
/// write its settings. An engine that does not answer is refused. Callers
/// check first that it is new ([`check_new`]). A server reached over SSH
/// with provisioners to run (`new.provision`) joins unknown, its bridge
/// held, so it takes no containers until they ran
/// ([`crate::provision::apply`]).
pub async fn register(
    store: &Store,
    fleet: &Fleet,
    new: NewServer,
    origin: Option<Origin>,
) -> Result<Server, FleetError> {
    let mut ssh = None;
    if let Some(target) = &new.ssh {
        let (pinned, contact) = join_ssh(store, &new.name, target).await?;
        fleet
            .links
            .lock()
            .expect("links")
            .insert(new.name.clone(), contact);
        ssh = Some(pinned);
    }
    let connected = async {
        check_transport(&new.docker, new.tls.is_some(), new.insecure)
            .map_err(FleetError::Transport)?;
        let tls = match &new.tls {
            Some(files) => Some(keep_tls_files(store, &new.name, files)?),
            None => None,
        };
        let docker = connect(&new.docker, tls.as_ref()).await?;
        let facts = facts(&docker).await?;
        Ok::<_, FleetError>((tls, docker, facts))
    }
    .await;
    let (tls, docker, facts) = match connected {
        Ok(c) => c,
        Err(e) => {
            fleet.links.lock().expect("links").remove(&new.name);
            let _ = std::fs::remove_dir_all(store_dir(store, &new.name));
            return Err(e);
        }
    };
    let mut state = ServerState::Running;
    if ssh.is_some()
        && !new.provision.is_empty()
        && let Some(link) = fleet.link(&new.name)
    {
        link.hold(Some("being provisioned".into()));
        state = ServerState::Unknown;
    }
    let server = Server {
        name: new.name,
        docker: new.docker,
        address: new.address.to_string(),
        memory: new.memory,
        labels: new.labels,
        state,
        facts,
        added: crate::store::now_rfc3339(),
        origin,
        tls,
        insecure: new.insecure,
        ssh,
        provisioned: BTreeMap::new(),
    };
    fleet.insert(store, server.clone(), docker)?;
    Ok(server)
}

/// Copy the TLS files into `servers/<name>/tls/` (the key 0600), so the
/// server keeps working when the originals move.
fn keep_tls_files(store: &Store, name: &str, files: &TlsFiles) -> Result<TlsFiles, FleetError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = store_dir(store, name).join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let copy = |what: &'static str, from: &std::path::Path, to: &str, mode: u32| {
        let bytes = std::fs::read(from).map_err(|source| FleetError::ReadTls {
            what,
            path: from.to_path_buf(),
            source,
        })?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            return Err(FleetError::NotPem {
                what,
                path: from.to_path_buf(),
            });
        }
        let path = dir.join(to);
        crate::store::write_atomic(&path, &bytes, mode).map_err(io(&path))?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        Ok(path)
    };
    Ok(TlsFiles {
        ca: copy("--tls-ca", &files.ca, "ca.pem", 0o644)?,
        cert: copy("--tls-cert", &files.cert, "cert.pem", 0o644)?,
        key: copy("--tls-key", &files.key, "key.pem", 0o600)?,
    })
}

fn store_dir(store: &Store, name: &str) -> std::path::PathBuf {
    store.root().join("servers").join(name)
}

pub(super) fn settings_path(store: &Store, name: &str) -> std::path::PathBuf {
    store_dir(store, name).join("settings.json")
}
