//! Parsing of the commands for servers over SSH: `servers:add --ssh`'s
//! target and host key, `keys:hq`, `provisioners*`, `servers:provision`,
//! `hosts`. Pure.

use super::args::{Args, server_name};
use super::{Cmd, ParseError};
use crate::remote::SshTarget;

/// `[USER@]HOST[:PORT]` (user `root`, port 22 by default) with an optional
/// `--host-key` to expect.
pub(super) fn ssh_target(
    a: &Args<'_>,
    text: &str,
    host_key: Option<&str>,
) -> Result<SshTarget, ParseError> {
    let parsed =
        SshTarget::parse(text).map_err(|why| a.usage_error(&format!("--ssh {text:?}: {why}")))?;
    let host_key = match host_key {
        None => None,
        Some(k) => {
            let key =
                crate::remote::parse_host_key(k).map_err(|e| a.usage_error(&e.to_string()))?;
            Some(
                key.to_openssh()
                    .map_err(|e| a.usage_error(&format!("--host-key: {e}")))?,
            )
        }
    };
    Ok(SshTarget { host_key, ..parsed })
}

fn provisioner(a: &Args<'_>, name: &str) -> Result<String, ParseError> {
    crate::provision::check_name(name).map_err(|e| a.usage_error(&e.to_string()))?;
    Ok(name.to_string())
}

pub(super) fn keys_hq(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    Args::split(command, words, &[], &[])?.exactly(0)?;
    Ok(Cmd::KeysHq)
}

pub(super) fn provisioner_named(
    command: &'static str,
    words: &[String],
) -> Result<String, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    provisioner(&a, a.exactly(1)?[0])
}

pub(super) fn servers_provision(
    command: &'static str,
    words: &[String],
) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.at_least(1)?;
    let server = server_name(p[0])?;
    let names = p[1..]
        .iter()
        .map(|n| provisioner(&a, n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cmd::ServersProvision { server, names })
}

#[cfg(test)]
mod tests {
    use super::super::Cmd;
    use super::super::tests::{cmd, err};

    #[test]
    fn ssh_targets_default_to_root_and_port_22() {
        match cmd("servers:add s1 --ssh 10.0.0.5 --memory 512") {
            Cmd::ServersAdd(new) => {
                let t = new.ssh.unwrap();
                assert_eq!(
                    (t.user.as_str(), t.host.as_str(), t.port),
                    ("root", "10.0.0.5", 22)
                );
                assert_eq!(new.address.to_string(), "10.0.0.5");
            }
            other => panic!("{other:?}"),
        }
        match cmd(
            "servers:add s1 --ssh quarry@box.example:2200 --address 10.0.0.7 --memory 512 --provision a --provision b",
        ) {
            Cmd::ServersAdd(new) => {
                let t = new.ssh.unwrap();
                assert_eq!(
                    (t.user.as_str(), t.host.as_str(), t.port),
                    ("quarry", "box.example", 2200)
                );
                assert_eq!(new.provision, vec!["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_ssh_arguments_are_named() {
        assert!(
            err("servers:add s1 --ssh box.example --memory 512")
                .starts_with("servers:add: --address is required with a host name in --ssh"),
        );
        assert!(
            err("servers:add s1 --ssh 10.0.0.5:0 --memory 512").starts_with(
                "servers:add: --ssh \"10.0.0.5:0\": the port is a number from 1 to 65535"
            ),
        );
        assert!(
            err("servers:add s1 --ssh 10.0.0.5 --docker unix:///x.sock --memory 512")
                .starts_with("servers:add: --ssh and --docker exclude each other"),
        );
        assert!(
            err("servers:add s1 --ssh 10.0.0.5 --memory 512 --host-key 'ssh-ed25519 nope'")
                .starts_with("servers:add: --host-key: not an OpenSSH public key"),
        );
        assert!(
            err("servers:add s1 --docker unix:///x.sock --address 10.0.0.5 --memory 512 --provision a")
                .starts_with("servers:add: --provision runs over SSH: it needs --ssh"),
        );
    }

    #[test]
    fn provisioner_commands() {
        assert_eq!(
            cmd("servers:provision s1 a b"),
            Cmd::ServersProvision {
                server: "s1".into(),
                names: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(cmd("provisioners --json"), Cmd::Provisioners { json: true });
        assert_eq!(cmd("hosts"), Cmd::Hosts { json: false });
        assert_eq!(cmd("keys:hq"), Cmd::KeysHq);
        assert!(err("provisioners:add ../x").starts_with("provisioners:add: provisioner name"));
    }
}
