//! Every command's name, usage and help text, in the order `help` lists
//! them. The [`Name`] enum is generated from the same table, so a command
//! cannot exist without its help, and the parser's `match` over [`Name`]
//! (no `_` arm) cannot forget one. Pure.

use super::oneoff;

/// One command's usage line and help text.
pub struct Spec {
    pub id: Name,
    pub name: &'static str,
    pub topic: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub details: &'static str,
}

/// The table: `Variant { name, topic, usage, summary, details }`, each
/// becoming a [`Name`] variant and a [`Spec`] in [`SPECS`].
macro_rules! commands {
    ($($id:ident {
        name: $name:literal,
        topic: $topic:literal,
        usage: $usage:expr,
        summary: $summary:expr,
        details: $details:expr $(,)?
    }),* $(,)?) => {
        /// Which command a line names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Name {
            $($id),*
        }

        /// Every command, in the order `help` lists them.
        pub const SPECS: &[Spec] = &[
            $(Spec {
                id: Name::$id,
                name: $name,
                topic: $topic,
                usage: $usage,
                summary: $summary,
                details: $details,
            }),*
        ];
    };
}

commands! {
    Apps {
        name: "apps",
        topic: "apps",
        usage: "apps [--json]",
        summary: "list apps with their status and live release",
        details: "",
    },
    AppsCreate {
        name: "apps:create",
        topic: "apps",
        usage: "apps:create APP",
        summary: "create an app without pushing",
        details: "APP is 1-63 lower-case letters, digits and '-'. A first push by an admin creates the app too.",
    },
    AppsDestroy {
        name: "apps:destroy",
        topic: "apps",
        usage: "apps:destroy APP --force  |  apps:destroy APP APP",
        summary: "remove an app: containers, route, images, repo and config",
        details: "Confirm with --force or by repeating the app name. Nothing of the app keeps running.",
    },
    Ps {
        name: "ps",
        topic: "ps",
        usage: "ps APP [--json]",
        summary: "the app's containers with state, release and address",
        details: "",
    },
    PsScale {
        name: "ps:scale",
        topic: "ps",
        usage: "ps:scale APP NODE=N…",
        summary: "set how many containers each node runs",
        details: "Example: ps:scale myapp web=3 worker=0",
    },
    PsRestart {
        name: "ps:restart",
        topic: "ps",
        usage: "ps:restart APP [NODE]",
        summary: "restart the app's containers (or one node's)",
        details: "",
    },
    PsStop {
        name: "ps:stop",
        topic: "ps",
        usage: "ps:stop APP",
        summary: "stop every container of the app and unroute it",
        details: "",
    },
    PsStart {
        name: "ps:start",
        topic: "ps",
        usage: "ps:start APP",
        summary: "start a stopped app again",
        details: "",
    },
    Plan {
        name: "plan",
        topic: "ps",
        usage: "plan APP [--json]",
        summary: "show the launch instructions that would bring the app to its desired state (dry run)",
        details: "",
    },
    Config {
        name: "config",
        topic: "config",
        usage: "config APP [--json]",
        summary: "show the app's config vars",
        details: "",
    },
    ConfigGet {
        name: "config:get",
        topic: "config",
        usage: "config:get APP KEY",
        summary: "print one config var's value",
        details: "",
    },
    ConfigSet {
        name: "config:set",
        topic: "config",
        usage: "config:set APP KEY=VALUE…",
        summary: "set config vars and roll out a new release",
        details: "KEY is upper-case letters, digits and '_'.",
    },
    ConfigUnset {
        name: "config:unset",
        topic: "config",
        usage: "config:unset APP KEY…",
        summary: "remove config vars and roll out a new release",
        details: "",
    },
    Volumes {
        name: "volumes",
        topic: "ps",
        usage: "volumes APP [--json]",
        summary: "the app's service volumes, and whether their service still exists",
        details: "",
    },
    VolumesRemove {
        name: "volumes:remove",
        topic: "ps",
        usage: "volumes:remove APP SERVICE",
        summary: "delete the data of a service that is no longer in quarry.yml",
        details: "Refused while the service is defined: remove it from quarry.yml and push first.",
    },
    Domains {
        name: "domains",
        topic: "domains",
        usage: "domains APP [--json]",
        summary: "list the app's domains",
        details: "",
    },
    DomainsAdd {
        name: "domains:add",
        topic: "domains",
        usage: "domains:add APP DOMAIN…",
        summary: "route more domains to the app's web node",
        details: "",
    },
    DomainsRemove {
        name: "domains:remove",
        topic: "domains",
        usage: "domains:remove APP DOMAIN…",
        summary: "stop routing domains to the app",
        details: "",
    },
    Certs {
        name: "certs",
        topic: "certs",
        usage: "certs APP [--json]",
        summary: "the app's certificate: domains, issuer, expiry and state",
        details: "States: pending (no certificate yet), valid, expiring (renewed within 30 days of expiry), expired, failing (the last issuance failed; see the error and events).",
    },
    CertsEnable {
        name: "certs:enable",
        topic: "certs",
        usage: "certs:enable APP",
        summary: "serve the app over HTTPS with a certificate from the ACME server, renewed automatically",
        details: "The certificate covers every domain routed to the app; a domain added later is added to it. The ACME server validates over HTTP (HTTP-01), so each domain's DNS must point at this server. See docs/tls.md.",
    },
    CertsDisable {
        name: "certs:disable",
        topic: "certs",
        usage: "certs:disable APP",
        summary: "serve the app over plain HTTP only and forget its certificates",
        details: "",
    },
    CertsAdd {
        name: "certs:add",
        topic: "certs",
        usage: "certs:add APP < fullchain-and-key.pem  |  certs:add APP --cert FILE --key FILE",
        summary: "serve the app with your own certificate",
        details: "Standard input holds the PEM chain (leaf first) and its unencrypted PKCS#8 key, e.g. `cat fullchain.pem key.pem | ssh … certs:add APP`. An admin may instead name the two PEM files on the Quarry host with --cert and --key (absolute paths; read as they are now, not followed later). Refused when the key does not match, the certificate expired, or it names a domain that is not the app's. Quarry does not renew it.",
    },
    CertsRemove {
        name: "certs:remove",
        topic: "certs",
        usage: "certs:remove APP",
        summary: "remove a certificate given with certs:add (the app goes back to HTTP)",
        details: "",
    },
    CertsRenew {
        name: "certs:renew",
        topic: "certs",
        usage: "certs:renew APP [--force]",
        summary: "issue the app's certificate again now if it is due, or always with --force",
        details: "",
    },
    Logs {
        name: "logs",
        topic: "logs",
        usage: "logs APP [-n N] [-f] [--node NODE] [--cron JOB]",
        summary: "the app's container logs, merged and time-ordered",
        details: "-n N shows the last N lines (default 100); -f follows until you disconnect. --cron JOB shows the output of the scheduled job's last runs instead.",
    },
    Releases {
        name: "releases",
        topic: "releases",
        usage: "releases APP [--json]",
        summary: "list the app's releases",
        details: "",
    },
    ReleasesInfo {
        name: "releases:info",
        topic: "releases",
        usage: "releases:info APP vN [--json]",
        summary: "show one release",
        details: "",
    },
    Rollback {
        name: "rollback",
        topic: "releases",
        usage: "rollback APP [vN]",
        summary: "redeploy an earlier release as a new one",
        details: "Without vN, the release before the live one.",
    },
    Servers {
        name: "servers",
        topic: "servers",
        usage: "servers [--json]",
        summary: "list the servers of the grid",
        details: "",
    },
    ServersInfo {
        name: "servers:info",
        topic: "servers",
        usage: "servers:info NAME [--json]",
        summary: "show one server",
        details: "",
    },
    ServersAdd {
        name: "servers:add",
        topic: "servers",
        usage: "servers:add NAME (--docker unix:///path.sock|tcp://host:port [--tls-ca FILE --tls-cert FILE --tls-key FILE | --insecure] | --ssh [USER@]HOST[:PORT] [--host-key KEY] [--provision NAME …]) --address IP --memory MiB [--label k=v …]",
        summary: "add a server (a Docker engine) to the grid (admin)",
        details: "Quarry connects, reads the engine's facts, and places containers there from then on. Containers publish their ports on --address; nginx proxies to it. --memory is the size the grid fills. An engine on tcp:// with --tlsverify takes the three --tls-* files (PEM paths on the Quarry host; they are copied into servers/NAME/tls/); a tcp:// engine without TLS is refused unless --insecure says it sits on a trusted private network. With --ssh Quarry reaches the engine through one SSH session (`docker system dial-stdio` there; no Docker port, no certificates): authorize the key `keys:hq` prints, give --host-key 'ssh-ed25519 AAAA…' or let the first contact pin the key the server shows; --address defaults to an IP HOST; each --provision script runs there after it joins.",
    },
    ServersProvision {
        name: "servers:provision",
        topic: "servers",
        usage: "servers:provision NAME [PROVISIONER …]",
        summary: "run provisioners on an SSH server again (admin)",
        details: "Without names: those whose script changed since they last ran there, that failed, or never ran there. Output streams as it comes; a failing script leaves the server unknown.",
    },
    Provisioners {
        name: "provisioners",
        topic: "servers",
        usage: "provisioners [--json]",
        summary: "list provisioner scripts with their sha1 and the servers they ran on (admin)",
        details: "",
    },
    ProvisionersAdd {
        name: "provisioners:add",
        topic: "servers",
        usage: "provisioners:add NAME < script.sh",
        summary: "store a provisioner script (admin; at most 1 MiB)",
        details: "Servers added with --ssh … --provision NAME run it with `sh -s` as the SSH user after they join; servers:provision runs it again.",
    },
    ProvisionersRemove {
        name: "provisioners:remove",
        topic: "servers",
        usage: "provisioners:remove NAME",
        summary: "forget a provisioner script (admin)",
        details: "",
    },
    Hosts {
        name: "hosts",
        topic: "servers",
        usage: "hosts [--json]",
        summary: "the fleet's name → address map kept in the SSH servers' /etc/hosts (admin)",
        details: "Quarry keeps the block between `# quarry hosts begin` and `# quarry hosts end` and rewrites it when servers join or leave.",
    },
    ServersDrain {
        name: "servers:drain",
        topic: "servers",
        usage: "servers:drain NAME",
        summary: "move every container off a server, with no downtime (admin)",
        details: "The server takes no new containers afterwards; remove it with servers:remove.",
    },
    ServersRemove {
        name: "servers:remove",
        topic: "servers",
        usage: "servers:remove NAME",
        summary: "forget a server that holds no containers (admin)",
        details: "Drain it first with servers:drain.",
    },
    Grid {
        name: "grid",
        topic: "servers",
        usage: "grid [--json]",
        summary: "show where every container is placed",
        details: "",
    },
    Network {
        name: "network",
        topic: "network",
        usage: "network [--json]",
        summary: "show the network lockdown on every server (admin)",
        details: "With network: { lockdown: true } in config.yml every server keeps the nftables table inet quarry: the fleet's addresses, 22 and the HQ's 80/443 are open, the rest is dropped.",
    },
    NetworkUnlock {
        name: "network:unlock",
        topic: "network",
        usage: "network:unlock",
        summary: "remove the lockdown's tables from every server and keep them off (admin)",
        details: "Until network:lock. To turn it off for good, set network.lockdown: false in config.yml.",
    },
    NetworkLock {
        name: "network:lock",
        topic: "network",
        usage: "network:lock",
        summary: "load the lockdown's rules on every server again after network:unlock (admin)",
        details: "",
    },
    Stacks {
        name: "stacks",
        topic: "apps",
        usage: "stacks [--json]",
        summary: "list the stack images buildpack apps run on",
        details: "A missing default stack is built on the first push that needs it; `quarry stack build` on the Quarry host builds one ahead of time.",
    },
    Keys {
        name: "keys",
        topic: "keys",
        usage: "keys [--json]",
        summary: "list authorized keys (admin)",
        details: "",
    },
    KeysAdd {
        name: "keys:add",
        topic: "keys",
        usage: "keys:add NAME --role admin|deployer [--apps a,b] [--create] < key.pub",
        summary: "authorize a public key (admin)",
        details: "The key is read from standard input. Deployers manage only the apps listed; --create lets them create apps.",
    },
    KeysRemove {
        name: "keys:remove",
        topic: "keys",
        usage: "keys:remove NAME",
        summary: "revoke a key (admin)",
        details: "",
    },
    KeysHq {
        name: "keys:hq",
        topic: "keys",
        usage: "keys:hq",
        summary: "print the HQ's public key for the authorized_keys of servers added with --ssh (admin)",
        details: "The same as `quarry keys hq` on the Quarry host.",
    },
    Run {
        name: "run",
        topic: "run",
        usage: "run APP [--node NODE] [--env K=V]… [--detach] [--timeout SECONDS] -- CMD [ARGS…]",
        summary: "run a command in a throwaway container of the live release",
        details: oneoff::RUN_HELP,
    },
    Enter {
        name: "enter",
        topic: "run",
        usage: "enter APP NODE.N [-- CMD [ARGS…]]",
        summary: "run a command (default /bin/sh) inside a running container",
        details: oneoff::ENTER_HELP,
    },
    Cron {
        name: "cron",
        topic: "cron",
        usage: "cron APP [--json]",
        summary: "the app's scheduled jobs: schedule, last run, next run",
        details: oneoff::CRON_HELP,
    },
    CronRun {
        name: "cron:run",
        topic: "cron",
        usage: "cron:run APP JOB",
        summary: "start a scheduled job now and wait for it",
        details: "Runs JOB of the live release at once, like its schedule would, and prints its output and exit code. Refused while the same job is still running.",
    },
    Events {
        name: "events",
        topic: "events",
        usage: "events [APP] [--json]",
        summary: "what happened: deploys, scaling, config and key changes",
        details: "",
    },
    Help {
        name: "help",
        topic: "help",
        usage: "help [COMMAND]",
        summary: "this overview, or one command's help",
        details: "",
    },
}

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// The overview printed by `help`.
pub fn overview() -> String {
    let mut out = String::from(
        "Quarry: git push to deploy.\n\n  git push ssh://git@HOST:PORT/APP main   build and deploy APP\n\nCommands (ssh -p PORT git@HOST COMMAND …):\n",
    );
    let mut topic = "";
    for s in SPECS {
        if s.topic != topic {
            topic = s.topic;
            out.push('\n');
        }
        out.push_str(&format!("  {:<44} {}\n", s.usage, s.summary));
    }
    out.push_str("\nRead commands take --json. Every command takes --help.\n");
    out
}

/// One command's `--help` text.
pub fn command_help(s: &Spec) -> String {
    let mut out = format!("Usage: {}\n\n{}.\n", s.usage, capitalise(s.summary));
    if !s.details.is_empty() {
        out.push_str(&format!("\n{}\n", s.details));
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
