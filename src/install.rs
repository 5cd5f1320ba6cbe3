//! `quarry install` and `quarry uninstall`: set this machine up to run
//! Quarry as a systemd service, or take it away again.
//!
//! Install copies the running binary to `<root>/usr/local/bin/quarry`
//! (a temp file, then one rename: a running daemon keeps its old inode, an
//! upgrade is atomic), makes `<root>/var/lib/quarry` (0700) and writes
//! `<root>/etc/systemd/system/quarry.service` ([`unit::render`]). On the
//! real root with systemd as PID 1 it then reloads systemd and enables and
//! starts the unit, or restarts it when it runs already (an upgrade). With
//! `--root DIR` (a scratch root, for tests and images) it only writes
//! files. `--check` changes nothing: it verifies the unit with
//! `systemd-analyze verify` and reports what the machine lacks (Docker,
//! nginx, git, ports in use), one line each.
//! May touch: the files above under the root, `systemctl`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod unit;

pub use unit::Unit;

/// Where an install puts its files, under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub unit: PathBuf,
}

impl Paths {
    pub fn under(root: &Path) -> Paths {
        Paths {
            bin: root.join("usr/local/bin/quarry"),
            data: root.join("var/lib/quarry"),
            unit: root.join("etc/systemd/system/quarry.service"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("quarry install needs root (or --root DIR to write a scratch root)")]
    NotRoot,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {reason}")]
    Command { command: String, reason: String },
    #[error("{0} problem(s) found")]
    Problems(usize),
    #[error("cannot run systemd-analyze ({0}): apt-get install systemd")]
    NoAnalyzer(std::io::Error),
    /// What `systemd-analyze verify` said about the unit.
    #[error("{0}")]
    Unit(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What to install where.
#[derive(Debug, Clone)]
pub struct Options {
    /// A scratch root; `None` is this machine (`/`).
    pub root: Option<PathBuf>,
    pub unit: Unit,
}

impl Options {
    fn paths(&self) -> Paths {
        Paths::under(self.root.as_deref().unwrap_or(Path::new("/")))
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether systemd runs this machine (sd_booted's test).
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Install (or upgrade in place). Prints what it did to `out`.
pub fn install(opts: &Options, out: &mut impl Write) -> Result<(), InstallError> {
    if opts.root.is_none() && !is_root() {
        return Err(InstallError::NotRoot);
    }
    let paths = opts.paths();
    let upgrade = paths.bin.exists();
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    replace_file(&exe, &paths.bin, 0o755)?;
    std::fs::create_dir_all(&paths.data).map_err(io(&paths.data))?;
    std::fs::set_permissions(&paths.data, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&paths.data))?;
    let unit_dir = paths.unit.parent().expect("unit dir");
    std::fs::create_dir_all(unit_dir).map_err(io(unit_dir))?;
    crate::store::write_atomic(&paths.unit, unit::render(&opts.unit).as_bytes(), 0o644)
        .map_err(io(&paths.unit))?;
    let _ = writeln!(
        out,
        "{} {} ({}), data {} (0700), unit {}",
        if upgrade { "upgraded" } else { "installed" },
        paths.bin.display(),
        env!("CARGO_PKG_VERSION"),
        paths.data.display(),
        paths.unit.display()
    );
    if opts.root.is_some() {
        let _ = writeln!(out, "scratch root: systemd was not asked to start anything");
    } else if systemd_runs() {
        systemctl(&["daemon-reload"])?;
        if upgrade && systemctl(&["is-active", "--quiet", "quarry"]).is_ok() {
            systemctl(&["restart", "quarry"])?;
            let _ = writeln!(out, "restarted quarry.service on the new binary");
        } else {
            systemctl(&["enable", "--now", "quarry"])?;
            let _ = writeln!(out, "enabled and started quarry.service");
        }
    } else {
        let _ = writeln!(
            out,
            "systemd does not run this machine: start Quarry with\n  {}",
            unit::render(&opts.unit)
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "add your key (the first admin):\n  {} keys add me --data {} < ~/.ssh/id_ed25519.pub",
        opts.unit.bin.display(),
        opts.unit.data.display()
    );
    Ok(())
}

/// Stop and remove the service and the binary; with `purge` the data dir too.
pub fn uninstall(
    root: Option<&Path>,
    purge: bool,
    out: &mut impl Write,
) -> Result<(), InstallError> {
    if root.is_none() && !is_root() {
        return Err(InstallError::NotRoot);
    }
    let paths = Paths::under(root.unwrap_or(Path::new("/")));
    if root.is_none() && systemd_runs() && paths.unit.exists() {
        systemctl(&["disable", "--now", "quarry"])?;
    }
    for path in [&paths.unit, &paths.bin] {
        match std::fs::remove_file(path) {
            Ok(()) => {
                let _ = writeln!(out, "removed {}", path.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    if root.is_none() && systemd_runs() {
        systemctl(&["daemon-reload"])?;
    }
    if purge {
        match std::fs::remove_dir_all(&paths.data) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "removed {} (all of Quarry's data)",
                    paths.data.display()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&paths.data)(e)),
        }
    } else if paths.data.exists() {
        let _ = writeln!(
            out,
            "kept {} (--purge removes it); apps keep running in Docker",
            paths.data.display()
        );
    }
    Ok(())
}

/// `--check`: one line per check, `ok` or what is wrong. Returns the
/// number of problems.
pub fn check(opts: &Options, out: &mut impl Write) -> usize {
    let mut problems = 0;
    let mut line = |ok: bool, text: String| {
        if !ok {
            problems += 1;
        }
        let _ = writeln!(out, "{} {text}", if ok { "ok  " } else { "FAIL" });
    };
    let text = unit::render(&opts.unit);
    // The unit names the installed path; verify it against this binary.
    let exe = std::env::current_exe().unwrap_or_else(|_| opts.unit.bin.clone());
    match verify(&text, &opts.unit.bin, &exe) {
        Ok(()) => line(true, "systemd-analyze verify quarry.service".into()),
        Err(e) => line(false, format!("systemd-analyze verify quarry.service: {e}")),
    }
    let docker_sock = Path::new("/var/run/docker.sock");
    match std::os::unix::net::UnixStream::connect(docker_sock) {
        Ok(_) => line(
            true,
            format!("Docker engine socket at {}", docker_sock.display()),
        ),
        Err(e) => line(
            false,
            format!(
                "Docker: no engine at {}: {e} (apt-get install docker.io)",
                docker_sock.display()
            ),
        ),
    }
    for (program, package, why) in [
        ("nginx", "nginx", "the router"),
        ("git", "git", "pushes"),
        ("nft", "nftables", "network lockdown"),
        ("debootstrap", "debootstrap", "buildpack stack images"),
    ] {
        match find_program(program) {
            Some(p) => line(true, format!("{program} at {} ({why})", p.display())),
            None => line(
                false,
                format!("{program} is missing ({why}): apt-get install {package}"),
            ),
        }
    }
    // An upgrade: the installed Quarry (and its nginx) hold the ports.
    let running = running_quarry(&opts.paths().data);
    for (flag, addr) in [
        ("--ssh", &opts.unit.ssh),
        ("--http", &opts.unit.http),
        ("--https", &opts.unit.https),
    ] {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            line(false, format!("{flag} {addr}: not an ADDRESS:PORT"));
            continue;
        };
        match TcpListener::bind(addr) {
            Ok(_) => line(true, format!("port {} ({flag}) is free", addr.port())),
            Err(_)
                if running
                    .as_ref()
                    .is_some_and(|(_, ports)| ports.contains(&addr.port())) =>
            {
                let pid = running.as_ref().map_or(0, |(pid, _)| *pid);
                line(
                    true,
                    format!(
                        "port {} ({flag}) is held by the running Quarry (pid {pid})",
                        addr.port()
                    ),
                )
            }
            Err(e) => line(
                false,
                format!(
                    "port {} ({flag}) is in use or not bindable: {e}",
                    addr.port()
                ),
            ),
        }
    }
    problems
}

/// The pid and ports of a Quarry serving from `data` (its `serve.json`,
/// while that pid lives).
fn running_quarry(data: &Path) -> Option<(u32, Vec<u16>)> {
    let running: crate::serve::Running =
        crate::store::read_json(&data.join("serve.json")).ok()??;
    if !Path::new(&format!("/proc/{}", running.pid)).exists() {
        return None;
    }
    let mut ports = vec![running.ssh.port(), running.http.port()];
    ports.extend(running.https.map(|a| a.port()));
    Some((running.pid, ports))
}

/// `systemd-analyze verify` on `text`, with the installed binary's path
/// `installed` read as `actual` (the unit may name a path that is not there
/// yet). Any line it prints is a failure: it exits 0 on ignored keys too.
pub fn verify(text: &str, installed: &Path, actual: &Path) -> Result<(), InstallError> {
    let dir = tempfile::tempdir().map_err(io(&std::env::temp_dir()))?;
    let path = dir.path().join("quarry.service");
    let text = text.replace(
        &format!("ExecStart={} ", installed.display()),
        &format!("ExecStart={} ", actual.display()),
    );
    std::fs::write(&path, text).map_err(io(&path))?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .map_err(InstallError::NoAnalyzer)?;
    let said: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if out.status.success() && said.is_empty() {
        Ok(())
    } else {
        Err(InstallError::Unit(if said.is_empty() {
            format!("exit {}", out.status)
        } else {
            said.join("; ")
        }))
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| InstallError::Command {
            command: format!("systemctl {}", args.join(" ")),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(InstallError::Command {
            command: format!("systemctl {}", args.join(" ")),
            reason: String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

/// Copy `from` over `to` atomically: a temp file beside it, fsync, rename.
fn replace_file(from: &Path, to: &Path, mode: u32) -> Result<(), InstallError> {
    let dir = to.parent().expect("a file in a dir");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".quarry.new-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let mut src = std::fs::File::open(from).map_err(io(from))?;
    std::io::copy(&mut src, tmp.as_file_mut()).map_err(io(to))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(to))?;
    tmp.as_file().sync_all().map_err(io(to))?;
    tmp.persist(to).map_err(|e| io(to)(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
