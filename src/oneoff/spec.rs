//! The container of a one-off, as plain data: built from a [`Template`]
//! (what the app's node runs with) and what the user asked for. Pure, so it
//! is tested as data; `session` and `detached` create it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::launch::{LABEL_APP, LABEL_INSTANCE, LABEL_NODE, LABEL_ONEOFF, LABEL_RELEASE};
use crate::manifest::Command;

/// Who started a one-off: shown by `ps` and kept on the container.
pub const LABEL_BY: &str = "quarry.oneoff.by";
/// The command a one-off runs, as the user gave it (for `ps`).
pub const LABEL_COMMAND: &str = "quarry.oneoff.command";

/// What a node of the app runs with: copied into each one-off.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub server: String,
    pub image: String,
    pub release: u32,
    pub node: String,
    /// `KEY=value`, as the node's containers get them.
    pub env: Vec<String>,
    /// The node's limits and hardening; ports and restarts are dropped.
    pub host: HostConfig,
    /// The app's network, if its containers join one.
    pub network: Option<String>,
    /// The image starts processes through a wrapper (the buildpack stack's
    /// entrypoint) that must stay in front of the command.
    pub wrapper: Option<String>,
}

/// What kind of one-off: the `quarry.oneoff` label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `run`, attached to an SSH channel or detached.
    Run,
    /// A scheduled job.
    Cron,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Cron => "cron",
        }
    }
}

/// One one-off container to create.
#[derive(Debug, Clone)]
pub struct OneOff<'a> {
    pub instance: &'a str,
    pub app: &'a str,
    pub kind: Kind,
    pub command: &'a Command,
    /// Added to (and overriding) the template's environment.
    pub env: &'a [(String, String)],
    pub tty: bool,
    /// Keep stdin open for an attached client.
    pub stdin: bool,
    pub by: &'a str,
}

/// The argv a one-off runs: the wrapper (if any) first, a string through
/// `/bin/sh -c`.
pub fn argv(command: &Command, wrapper: Option<&str>) -> Vec<String> {
    let mut argv: Vec<String> = wrapper.map(str::to_owned).into_iter().collect();
    match command {
        Command::Shell(s) => argv.extend(["/bin/sh".to_owned(), "-c".to_owned(), s.clone()]),
        Command::Exec(words) => argv.extend(words.iter().cloned()),
    }
    argv
}

/// The command as one line for labels, events and `ps`.
pub fn describe(command: &Command) -> String {
    let text = match command {
        Command::Shell(s) => s.clone(),
        Command::Exec(words) => shell_words::join(words),
    };
    text.chars().take(200).collect()
}

/// The create body of a one-off from its node's template.
pub fn body(t: &Template, o: &OneOff) -> ContainerCreateBody {
    let mut env = t.env.clone();
    for (k, v) in o.env {
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
    }
    let labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), o.instance.to_owned()),
        (LABEL_APP.to_owned(), o.app.to_owned()),
        (LABEL_NODE.to_owned(), t.node.clone()),
        (LABEL_RELEASE.to_owned(), t.release.to_string()),
        (LABEL_ONEOFF.to_owned(), o.kind.as_str().to_owned()),
        (LABEL_BY.to_owned(), o.by.to_owned()),
        (LABEL_COMMAND.to_owned(), describe(o.command)),
    ]);
    let argv = argv(o.command, t.wrapper.as_deref());
    let host = HostConfig {
        port_bindings: None,
        publish_all_ports: Some(false),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        auto_remove: Some(false),
        // A TTY session gets a terminal's signals from the TTY itself; the
        // init process reaps and forwards for pipes.
        init: Some(true),
        ..t.host.clone()
    };
    ContainerCreateBody {
        image: Some(t.image.clone()),
        env: Some(env),
        labels: Some(labels),
        entrypoint: Some(argv[..1].to_vec()),
        cmd: Some(argv[1..].to_vec()),
        tty: Some(o.tty),
        open_stdin: Some(o.stdin),
        stdin_once: Some(o.stdin),
        attach_stdin: Some(o.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        networking_config: t.network.as_ref().map(|net| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(net.clone(), EndpointSettings::default())])),
        }),
        host_config: Some(host),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            server: "local".into(),
            image: "quarry/shop:v3".into(),
            release: 3,
            node: "web".into(),
            env: vec!["PORT=5000".into(), "GREETING=hi".into()],
            host: HostConfig {
                memory: Some(256 * 1024 * 1024),
                cap_drop: Some(vec!["NET_RAW".into()]),
                port_bindings: Some(HashMap::new()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                network_mode: Some("quarry-net".into()),
                ..Default::default()
            },
            network: Some("quarry-net".into()),
            wrapper: None,
        }
    }

    #[test]
    fn a_one_off_keeps_the_nodes_limits_and_drops_ports_and_restarts() {
        let cmd = Command::Exec(vec!["python".into(), "manage.py".into(), "migrate".into()]);
        let env = [("GREETING".to_owned(), "bye".to_owned())];
        let o = OneOff {
            instance: "i1",
            app: "shop",
            kind: Kind::Run,
            command: &cmd,
            env: &env,
            tty: true,
            stdin: true,
            by: "alice",
        };
        let b = body(&template(), &o);
        let h = b.host_config.unwrap();
        assert_eq!(h.memory, Some(256 * 1024 * 1024));
        assert_eq!(h.cap_drop, Some(vec!["NET_RAW".to_string()]));
        assert_eq!(h.port_bindings, None);
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(h.network_mode.as_deref(), Some("quarry-net"));
        assert_eq!(b.entrypoint, Some(vec!["python".to_string()]));
        assert_eq!(
            b.cmd,
            Some(vec!["manage.py".to_string(), "migrate".to_string()])
        );
        assert_eq!(
            b.env,
            Some(vec!["PORT=5000".to_string(), "GREETING=bye".to_string()])
        );
        assert_eq!(
            (b.tty, b.open_stdin, b.stdin_once),
            (Some(true), Some(true), Some(true))
        );
        let labels = b.labels.unwrap();
        assert_eq!(labels[LABEL_ONEOFF], "run");
        assert_eq!(labels[LABEL_BY], "alice");
        assert_eq!(labels[LABEL_COMMAND], "python manage.py migrate");
    }

    #[test]
    fn a_wrapper_stays_in_front_and_strings_run_in_a_shell() {
        let cmd = Command::Shell("echo a && echo b".into());
        assert_eq!(
            argv(&cmd, Some("/usr/local/bin/quarry-entrypoint")),
            [
                "/usr/local/bin/quarry-entrypoint",
                "/bin/sh",
                "-c",
                "echo a && echo b"
            ]
        );
        assert_eq!(argv(&cmd, None), ["/bin/sh", "-c", "echo a && echo b"]);
    }
}
