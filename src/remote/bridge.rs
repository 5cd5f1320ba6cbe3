//! The Docker API of an SSH server as a local unix socket: each connection
//! accepted on `servers/<name>/docker.sock` (0600, in a 0700 dir) is one
//! channel to the server's engine ([`Link::docker_channel`]: straight to its
//! socket, else `docker system dial-stdio`), bytes copied both ways. A connection arriving while the session is down (or the server
//! is held after a failed provisioner) is closed at once: the engine looks
//! down, and the fleet's pings mark the server unknown.
//! May touch: the socket it is given, the link's session.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;

use super::Link;

/// What runs on the server for each Docker API connection.
pub const DIAL_STDIO: &str = "docker system dial-stdio";

/// The socket of server `name` under the data dir.
pub fn socket_path(root: &Path, name: &str) -> PathBuf {
    root.join("servers").join(name).join("docker.sock")
}

/// A running bridge; stopped when dropped.
pub struct Bridge {
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Listen on `socket` (replacing a stale one) and bridge to `link`.
pub fn start(link: Arc<Link>, socket: &Path) -> std::io::Result<Bridge> {
    let dir = socket.parent().expect("socket in a dir");
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let link = link.clone();
            tokio::spawn(async move {
                if link.held().is_some() {
                    return;
                }
                let (channel, _lease) = match link.docker_channel().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("{e}");
                        return;
                    }
                };
                let mut stream = channel.into_stream();
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut stream).await;
            });
        }
    });
    Ok(Bridge {
        task,
        socket: socket.to_path_buf(),
    })
}
