//! Where a ruleset is loaded: the executors of the lockdown. The HQ runs
//! `nft -f -` itself; another server gets a short-lived container on its
//! Docker engine (host network, `NET_ADMIN`, nothing else) from the tiny
//! local image `quarry-base/nft`, which is made from the HQ's own `nft`
//! binary and the shared libraries `ldd` names (no registry needed) and
//! shipped like every other image ([`crate::fleet::ensure_image`]).
//! May touch: the HQ's nftables, the engines' containers named
//! `quarry-nft-*`, the image `quarry-base/nft`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::LockdownError;
use crate::launch;

/// The image the engines run nft from.
pub const NFT_IMAGE: &str = "quarry-base/nft:latest";

/// How long one load may take on one server.
const DEADLINE: Duration = Duration::from_secs(60);

/// How a server's rules are loaded. A later transport (SSH) is one more
/// variant here.
pub enum Executor {
    /// This machine: `nft -f -`.
    Local,
    /// A server's Docker engine; `hq` is the engine the image comes from.
    Engine { docker: Docker, hq: Docker },
}

impl Executor {
    /// Load `text` (a whole `nft -f` file) atomically.
    pub async fn load(&self, server: &str, text: &str) -> Result<(), LockdownError> {
        match self {
            Executor::Local => load_local(server, text).await,
            Executor::Engine { docker, hq } => {
                tokio::time::timeout(DEADLINE, load_on_engine(server, docker, hq, text))
                    .await
                    .unwrap_or_else(|_| {
                        Err(LockdownError::Server {
                            server: server.to_string(),
                            reason: format!("nft did not finish within {}s", DEADLINE.as_secs()),
                        })
                    })
            }
        }
    }
}

/// `nft -f -` on this machine.
async fn load_local(server: &str, text: &str) -> Result<(), LockdownError> {
    use tokio::io::AsyncWriteExt;
    let nft = nft_binary().ok_or(LockdownError::NoNft)?;
    let mut child = tokio::process::Command::new(&nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LockdownError::Server {
            server: server.to_string(),
            reason: format!("cannot run {}: {e}", nft.display()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| LockdownError::Server {
            server: server.to_string(),
            reason: "nft did not finish".into(),
        })?
        .map_err(|e| LockdownError::Server {
            server: server.to_string(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LockdownError::Server {
            server: server.to_string(),
            reason: format!("nft refused the rules: {}", one_line(&out.stderr)),
        })
    }
}

async fn load_on_engine(
    server: &str,
    docker: &Docker,
    hq: &Docker,
    text: &str,
) -> Result<(), LockdownError> {
    let engine = |reason: String| LockdownError::Server {
        server: server.to_string(),
        reason,
    };
    ensure_image(hq).await?;
    crate::fleet::ensure_image(hq, docker, NFT_IMAGE)
        .await
        .map_err(|e| engine(e.to_string()))?;
    let name = format!("quarry-nft-{:06x}", rand::random_range(0..0xff_ffffu32));
    let body = ContainerCreateBody {
        image: Some(NFT_IMAGE.to_string()),
        cmd: Some(vec!["-f".into(), "/quarry.nft".into()]),
        network_disabled: None,
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["NET_ADMIN".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| {
            engine(format!(
                "cannot create {name}: {}",
                launch::docker_message(&e)
            ))
        })?;
    let id = created.id;
    let result = async {
        let tar = one_file_tar("quarry.nft", text.as_bytes()).map_err(|e| engine(e.to_string()))?;
        docker
            .upload_to_container(
                &id,
                Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| {
                engine(format!(
                    "cannot hand the rules to {name}: {}",
                    launch::docker_message(&e)
                ))
            })?;
        docker.start_container(&id, None).await.map_err(|e| {
            engine(format!(
                "cannot start {name}: {}",
                launch::docker_message(&e)
            ))
        })?;
        let code = launch::exit_code(docker, &id).await;
        if code == 0 {
            Ok(())
        } else {
            let logs = launch::tail_logs(docker, &id, 5).await;
            Err(engine(format!(
                "nft refused the rules (exit {code}): {}",
                logs.join(" | ")
            )))
        }
    }
    .await;
    let _ = launch::remove(docker, &id, 0).await;
    result
}

/// Build `quarry-base/nft` on the HQ's engine unless it is there.
pub async fn ensure_image(hq: &Docker) -> Result<(), LockdownError> {
    if hq.inspect_image(NFT_IMAGE).await.is_ok() {
        return Ok(());
    }
    let nft = nft_binary().ok_or(LockdownError::NoNft)?;
    let context = image_context(&nft).map_err(LockdownError::ImageContext)?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(NFT_IMAGE)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = hq.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(LockdownError::Image(e));
                }
            }
            Err(e) => return Err(LockdownError::Image(launch::docker_message(&e))),
        }
    }
    Ok(())
}

/// The HQ's nft binary.
pub fn nft_binary() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A build context: `FROM scratch`, the nft binary, every library `ldd`
/// names (at the same paths) and the protocol/service name tables.
fn image_context(nft: &Path) -> std::io::Result<Vec<u8>> {
    let out = std::process::Command::new("ldd").arg(nft).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ldd {}: {}",
            nft.display(),
            one_line(&out.stderr)
        )));
    }
    let mut files: Vec<PathBuf> = vec![nft.to_path_buf()];
    files.extend(libraries(&String::from_utf8_lossy(&out.stdout)));
    for extra in ["/etc/protocols", "/etc/services"] {
        if Path::new(extra).is_file() {
            files.push(PathBuf::from(extra));
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    let dockerfile = format!(
        "FROM scratch\nCOPY root/ /\nENTRYPOINT [\"{}\"]\n",
        nft.display()
    );
    append(&mut builder, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    for file in files {
        // System files of the HQ (root's own), not tenant input.
        let bytes = std::fs::read(&file)?;
        let rel = file.strip_prefix("/").unwrap_or(&file);
        append(
            &mut builder,
            &format!("root/{}", rel.display()),
            &bytes,
            0o755,
        )?;
    }
    builder.into_inner()
}

/// The absolute paths in `ldd`'s output (`lib => /path (addr)` and the
/// loader's `/path (addr)`).
pub fn libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    builder.append_data(&mut header, path, bytes)
}

fn one_file_tar(name: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, name, bytes, 0o644)?;
    builder.into_inner()
}

fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::libraries;
    use std::path::PathBuf;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ff5503ba000)
\tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x00007ff5502c7000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff5500ab000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007ff5503bc000)
";
        assert_eq!(
            libraries(ldd),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libnftables.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
