//! The systemd unit `quarry.service` (pure): rendered from the install's
//! paths and listen addresses, golden-tested.
//!
//! Choices, and why:
//! - `User=root`. The daemon drives the Docker socket (root on that machine
//!   for whoever holds it), binds nginx to 80/443, loads nftables and sets
//!   owners of build caches (uid 65000): a `quarry` user would need the
//!   `docker` group, `CAP_NET_BIND_SERVICE`, `CAP_NET_ADMIN`, `CAP_CHOWN`
//!   and nginx's `CAP_SETUID`/`CAP_SETGID` — root in all but name, so no
//!   such user is made (docs/install.md).
//! - `NoNewPrivileges=yes`: nothing Quarry runs gains privileges through a
//!   set-uid binary or file capabilities; nginx's master drops to its
//!   worker user itself, git and the Docker API need nothing more, and
//!   containers are started by dockerd, outside this unit.
//! - `ProtectSystem=full` (/usr, /boot, /etc read-only) with the data dir
//!   writable, `ProtectHome=read-only`, `PrivateTmp=yes`: Quarry writes only
//!   under its data dir and /tmp (the stack build's debootstrap).
//!   `strict` would also need every path nginx and debootstrap touch listed.
//! - `KillMode=process`: a stop, restart or upgrade signals only the daemon;
//!   the nginx it started is not killed with it, and with
//!   `QUARRY_KEEP_NGINX=1` the daemon leaves it running on SIGTERM, so
//!   traffic keeps flowing while the new daemon adopts it.
//! - `Restart=always`, `LimitNOFILE` high (every SSH session, nginx and
//!   Docker stream holds descriptors), output to journald.

use std::fmt::Write;
use std::path::PathBuf;

/// What the unit starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The installed binary.
    pub bin: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    pub ssh: String,
    pub http: String,
    pub https: String,
    /// Where the HQ's containers publish their ports (nginx proxies there).
    pub publish: String,
    pub root_domain: String,
}

impl Default for Unit {
    fn default() -> Unit {
        Unit {
            bin: PathBuf::from("/usr/local/bin/quarry"),
            data: PathBuf::from("/var/lib/quarry"),
            ssh: "0.0.0.0:2222".into(),
            http: "0.0.0.0:80".into(),
            https: "0.0.0.0:443".into(),
            publish: "127.0.0.1".into(),
            root_domain: "localhost".into(),
        }
    }
}

/// The unit file's text.
pub fn render(u: &Unit) -> String {
    let mut s = String::new();
    s.push_str("# Written by `quarry install`; `quarry install` again rewrites it.\n");
    s.push_str("[Unit]\n");
    s.push_str("Description=Quarry git-push PaaS\n");
    s.push_str("After=network-online.target docker.service\n");
    s.push_str("Wants=network-online.target docker.service\n");
    s.push('\n');
    s.push_str("[Service]\n");
    s.push_str("Type=exec\n");
    let _ = writeln!(
        s,
        "ExecStart={} serve --data {} --ssh {} --http {} --https {} --publish {} --root-domain {}",
        u.bin.display(),
        u.data.display(),
        u.ssh,
        u.http,
        u.https,
        u.publish,
        u.root_domain
    );
    s.push_str("Environment=QUARRY_LOG=info\n");
    // A stop leaves nginx serving for the next start to adopt (route/adopt.rs).
    s.push_str("Environment=QUARRY_KEEP_NGINX=1\n");
    s.push_str("User=root\n");
    s.push_str("Restart=always\n");
    s.push_str("RestartSec=2\n");
    s.push_str("# Only the daemon is signalled: the nginx it started keeps serving.\n");
    s.push_str("KillMode=process\n");
    s.push_str("TimeoutStopSec=30\n");
    s.push_str("LimitNOFILE=1048576\n");
    s.push_str("NoNewPrivileges=yes\n");
    s.push_str("ProtectSystem=full\n");
    s.push_str("ProtectHome=read-only\n");
    s.push_str("PrivateTmp=yes\n");
    let _ = writeln!(s, "ReadWritePaths={}", u.data.display());
    s.push_str("StandardOutput=journal\n");
    s.push_str("StandardError=journal\n");
    s.push_str("SyslogIdentifier=quarry\n");
    s.push('\n');
    s.push_str("[Install]\n");
    s.push_str("WantedBy=multi-user.target\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_unit() {
        assert_eq!(
            render(&Unit::default()),
            "# Written by `quarry install`; `quarry install` again rewrites it.
[Unit]
Description=Quarry git-push PaaS
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
Type=exec
ExecStart=/usr/local/bin/quarry serve --data /var/lib/quarry --ssh 0.0.0.0:2222 --http 0.0.0.0:80 --https 0.0.0.0:443 --publish 127.0.0.1 --root-domain localhost
Environment=QUARRY_LOG=info
Environment=QUARRY_KEEP_NGINX=1
User=root
Restart=always
RestartSec=2
# Only the daemon is signalled: the nginx it started keeps serving.
KillMode=process
TimeoutStopSec=30
LimitNOFILE=1048576
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
ReadWritePaths=/var/lib/quarry
StandardOutput=journal
StandardError=journal
SyslogIdentifier=quarry

[Install]
WantedBy=multi-user.target
"
        );
    }

    #[test]
    fn the_repository_unit_is_the_default_one() {
        assert_eq!(
            include_str!("../../systemd/quarry.service"),
            render(&Unit::default()),
            "systemd/quarry.service is `quarry install`'s unit: write it again from render()"
        );
    }

    #[test]
    fn flags_reach_the_command_line() {
        let text = render(&Unit {
            root_domain: "apps.example.com".into(),
            ssh: "0.0.0.0:22".into(),
            ..Unit::default()
        });
        assert!(
            text.contains(" --ssh 0.0.0.0:22 ") && text.ends_with("WantedBy=multi-user.target\n"),
            "{text}"
        );
        assert!(text.contains("--root-domain apps.example.com\n"), "{text}");
    }
}
