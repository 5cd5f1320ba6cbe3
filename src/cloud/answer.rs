//! From a provider's `add` answer to the server Quarry registers: its
//! address, and how it is reached — a Docker endpoint (a plain `tcp://`
//! one only with TLS files or `insecure`), or an sshd (`ssh`, optionally
//! with its `host_key`) reached exactly as `servers:add --ssh` does,
//! through a Docker bridge on `bridge`. Pure.

use std::path::Path;

use super::ProviderError;
use super::provider::{AddRequest, Machine, Size};
use crate::endpoint::{NewServer, SshTarget};

/// The server to register for `machine`, answered by provider `kind` for
/// `request` (of `size`); `provision` names the provisioners it runs
/// before it takes containers (only over SSH).
pub fn new_server(
    kind: &str,
    machine: &Machine,
    request: &AddRequest,
    size: &Size,
    bridge: &Path,
    provision: &[String],
) -> Result<NewServer, ProviderError> {
    let refuse = |what: String, why: &str| ProviderError::Answer {
        provider: kind.to_string(),
        what,
        why: why.to_string(),
    };
    let address = machine.address.parse().map_err(|_| {
        refuse(
            format!("address {:?}", machine.address),
            "not an IP address",
        )
    })?;
    let (docker, ssh) = match (&machine.docker, &machine.ssh) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                "both docker and ssh".into(),
                "give one way to reach it",
            ));
        }
        (None, None) => {
            return Err(refuse(
                "neither docker nor ssh".into(),
                "give \"docker\" (its engine) or \"ssh\" (user@host[:port] of its sshd)",
            ));
        }
        (Some(docker), None) => {
            if machine.host_key.is_some() {
                return Err(refuse(
                    "a host_key without ssh".into(),
                    "it goes with \"ssh\"",
                ));
            }
            if docker.starts_with("tcp://") && machine.tls.is_none() && !machine.insecure {
                return Err(refuse(
                    format!("{docker} without tls files"),
                    "give \"tls\" in the answer, or \"insecure\": true for an engine on a trusted private network",
                ));
            }
            (docker.clone(), None)
        }
        (None, Some(text)) => {
            if machine.tls.is_some() || machine.insecure {
                return Err(refuse(
                    "ssh with tls or insecure".into(),
                    "those are for tcp:// engines; ssh needs neither",
                ));
            }
            let mut target =
                SshTarget::parse(text).map_err(|why| refuse(format!("ssh {text:?}"), why))?;
            if let Some(key) = &machine.host_key {
                let parsed = crate::remote::parse_host_key(key)
                    .map_err(|e| refuse("host_key".into(), &e.to_string()))?;
                let text = parsed
                    .to_openssh()
                    .map_err(|e| refuse("host_key".into(), &e.to_string()))?;
                target.host_key = Some(text);
            }
            (
                format!("unix://{}", bridge.display()),
                Some(Box::new(target)),
            )
        }
    };
    let mut labels = machine.labels.clone();
    labels.extend(request.labels.clone());
    Ok(NewServer {
        name: request.name.clone(),
        provision: if ssh.is_some() {
            provision.to_vec()
        } else {
            Vec::new()
        },
        docker,
        address,
        memory: machine.memory.unwrap_or(size.memory),
        labels,
        tls: machine.tls.clone(),
        insecure: machine.insecure,
        ssh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Labels;

    fn machine(json: &str) -> Machine {
        serde_json::from_str(json).unwrap()
    }

    fn server(json: &str) -> Result<NewServer, ProviderError> {
        let request = AddRequest {
            name: "auto-1".into(),
            size: "small".into(),
            memory: 256,
            labels: Labels::from([("pool".to_string(), "burst".to_string())]),
        };
        let size = Size {
            name: "small".into(),
            cpus: 1,
            memory: 512,
            price: 0.01,
        };
        new_server(
            "exec",
            &machine(json),
            &request,
            &size,
            Path::new("/data/servers/auto-1/docker.sock"),
            &["base".to_string()],
        )
    }

    #[test]
    fn an_ssh_answer_is_reached_through_the_bridge_and_provisioned() {
        let s = server(r#"{"id":"m-1","ssh":"quarry@10.0.0.7:2222","address":"10.0.0.7","labels":{"zone":"a"}}"#).unwrap();
        assert_eq!(s.docker, "unix:///data/servers/auto-1/docker.sock");
        assert_eq!(
            s.ssh.as_deref(),
            Some(&SshTarget {
                user: "quarry".into(),
                host: "10.0.0.7".into(),
                port: 2222,
                host_key: None
            })
        );
        assert_eq!(s.provision, vec!["base"]);
        assert_eq!(s.memory, 512);
        assert_eq!(
            s.labels.keys().collect::<Vec<_>>(),
            vec!["pool", "zone"],
            "the request's labels and the answer's"
        );
        // A Docker endpoint runs no provisioners: there is no session.
        let s =
            server(r#"{"id":"m-1","docker":"unix:///run/d.sock","address":"10.0.0.7"}"#).unwrap();
        assert!(s.ssh.is_none() && s.provision.is_empty());
    }

    #[test]
    fn answers_quarry_cannot_use_are_refused_with_the_reason() {
        for (json, error) in [
            (
                r#"{"id":"m","docker":"tcp://10.0.0.9:2375","address":"10.0.0.9"}"#,
                "provider exec answered tcp://10.0.0.9:2375 without tls files: give \"tls\" in the answer, or \"insecure\": true for an engine on a trusted private network",
            ),
            (
                r#"{"id":"m","address":"10.0.0.9"}"#,
                "provider exec answered neither docker nor ssh: give \"docker\" (its engine) or \"ssh\" (user@host[:port] of its sshd)",
            ),
            (
                r#"{"id":"m","ssh":"10.0.0.9","docker":"unix:///d.sock","address":"10.0.0.9"}"#,
                "provider exec answered both docker and ssh: give one way to reach it",
            ),
            (
                r#"{"id":"m","ssh":"10.0.0.9:0","address":"10.0.0.9"}"#,
                "provider exec answered ssh \"10.0.0.9:0\": the port is a number from 1 to 65535",
            ),
            (
                r#"{"id":"m","ssh":"10.0.0.9","insecure":true,"address":"10.0.0.9"}"#,
                "provider exec answered ssh with tls or insecure: those are for tcp:// engines; ssh needs neither",
            ),
            (
                r#"{"id":"m","ssh":"10.0.0.9","address":"box-9"}"#,
                "provider exec answered address \"box-9\": not an IP address",
            ),
        ] {
            assert_eq!(server(json).unwrap_err().to_string(), error, "{json}");
        }
        assert!(
            server(r#"{"id":"m","ssh":"10.0.0.9","host_key":"ssh-ed25519 nonsense","address":"10.0.0.9"}"#)
                .unwrap_err()
                .to_string()
                .starts_with("provider exec answered host_key: ")
        );
    }
}
