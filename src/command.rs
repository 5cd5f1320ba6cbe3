//! Parsing of SSH exec requests into one closed enum.
//!
//! The line is split like a POSIX shell would split words (quotes honoured)
//! but nothing is ever run by a shell: each word becomes a typed, validated
//! field. Every command's usage and help text lives in [`SPECS`], which also
//! drives `help` and `<command> --help`. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use crate::validate;

mod oneoff;
mod remote;
pub use oneoff::{DEFAULT_TIMEOUT_SECS as RUN_TIMEOUT_SECS, RunArgs};

/// Exit codes, distinct per class of failure.
pub const EXIT_OK: u32 = 0;
pub const EXIT_FAILURE: u32 = 1;
pub const EXIT_USAGE: u32 = 2;
pub const EXIT_NOT_FOUND: u32 = 3;
pub const EXIT_DENIED: u32 = 4;
pub const EXIT_CONFLICT: u32 = 5;

/// What an SSH exec line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `git-receive-pack '/app.git'` or `git-upload-pack …`.
    Git {
        service: GitService,
        app: String,
    },
    Command(Cmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitService {
    ReceivePack,
    UploadPack,
}

impl GitService {
    pub fn subcommand(self) -> &'static str {
        match self {
            GitService::ReceivePack => "receive-pack",
            GitService::UploadPack => "upload-pack",
        }
    }
}

/// A control command, fully validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Help {
        topic: Option<String>,
    },
    /// `<command> --help`.
    CommandHelp {
        name: &'static str,
    },
    Apps {
        json: bool,
    },
    AppsCreate {
        app: String,
    },
    AppsDestroy {
        app: String,
    },
    Ps {
        app: String,
        json: bool,
    },
    PsScale {
        app: String,
        scale: BTreeMap<String, u32>,
    },
    PsRestart {
        app: String,
        node: Option<String>,
    },
    PsStop {
        app: String,
    },
    PsStart {
        app: String,
    },
    Plan {
        app: String,
        json: bool,
    },
    Config {
        app: String,
        json: bool,
    },
    ConfigGet {
        app: String,
        key: String,
    },
    ConfigSet {
        app: String,
        vars: BTreeMap<String, String>,
    },
    ConfigUnset {
        app: String,
        keys: Vec<String>,
    },
    Domains {
        app: String,
        json: bool,
    },
    DomainsAdd {
        app: String,
        domains: Vec<String>,
    },
    DomainsRemove {
        app: String,
        domains: Vec<String>,
    },
    Logs {
        app: String,
        lines: usize,
        follow: bool,
        node: Option<String>,
        /// The output of a scheduled job's runs instead of the containers'.
        cron: Option<String>,
    },
    Releases {
        app: String,
        json: bool,
    },
    ReleasesInfo {
        app: String,
        release: u32,
        json: bool,
    },
    Rollback {
        app: String,
        release: Option<u32>,
    },
    Servers {
        json: bool,
    },
    ServersInfo {
        name: String,
        json: bool,
    },
    ServersAdd(NewServer),
    ServersDrain {
        name: String,
    },
    ServersRemove {
        name: String,
    },
    Grid {
        json: bool,
    },
    Stacks {
        json: bool,
    },
    Keys {
        json: bool,
    },
    KeysAdd {
        name: String,
        role: crate::store::Role,
        apps: Vec<String>,
        create: bool,
    },
    KeysRemove {
        name: String,
    },
    Events {
        app: Option<String>,
        json: bool,
    },
    Volumes {
        app: String,
        json: bool,
    },
    VolumesRemove {
        app: String,
        service: String,
    },
    /// `run`: a one-off container of the live release.
    Run(oneoff::RunArgs),
    /// `enter`: a process in a running container.
    Enter {
        app: String,
        node: String,
        index: u32,
        command: Option<crate::manifest::Command>,
    },
    Cron {
        app: String,
        json: bool,
    },
    CronRun {
        app: String,
        job: String,
    },
    Certs {
        app: String,
        json: bool,
    },
    CertsEnable {
        app: String,
    },
    CertsDisable {
        app: String,
    },
    /// The chain and key come on standard input.
    CertsAdd {
        app: String,
    },
    CertsRemove {
        app: String,
    },
    CertsRenew {
        app: String,
        force: bool,
    },
    /// The HQ's public key, for the servers' authorized_keys.
    KeysHq,
    Provisioners {
        json: bool,
    },
    /// The script comes on standard input.
    ProvisionersAdd {
        name: String,
    },
    ProvisionersRemove {
        name: String,
    },
    /// Run provisioners on a server again (the named ones, else those that
    /// changed, failed or never ran there).
    ServersProvision {
        server: String,
        names: Vec<String>,
    },
    Hosts {
        json: bool,
    },
}

/// `servers:add` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    /// `unix:///path.sock` or `tcp://host:port`.
    pub docker: String,
    pub address: std::net::IpAddr,
    /// MiB for the grid.
    pub memory: u64,
    pub labels: BTreeMap<String, String>,
    /// PEM files for a `tcp://` engine with TLS.
    pub tls: Option<crate::fleet::TlsFiles>,
    /// A plain `tcp://` engine without TLS, on purpose (`--insecure`).
    pub insecure: bool,
    /// Reached over SSH (`--ssh`); `docker` is then set when it is added.
    pub ssh: Option<Box<crate::remote::SshTarget>>,
    /// Provisioners to run once it joined (`--provision`, in order).
    pub provision: Vec<String>,
}

/// A refused line: the message and the exit code class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub code: u32,
}

impl ParseError {
    fn usage(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    pub fn code(&self) -> u32 {
        self.code
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One command's usage line and help text.
pub struct Spec {
    pub name: &'static str,
    pub topic: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub details: &'static str,
}

/// Every command, in the order `help` lists them.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "apps",
        topic: "apps",
        usage: "apps [--json]",
        summary: "list apps with their status and live release",
        details: "",
    },
    Spec {
        name: "apps:create",
        topic: "apps",
        usage: "apps:create APP",
        summary: "create an app without pushing",
        details: "APP is 1-63 lower-case letters, digits and '-'. A first push by an admin creates the app too.",
    },
    Spec {
        name: "apps:destroy",
        topic: "apps",
        usage: "apps:destroy APP --force  |  apps:destroy APP APP",
        summary: "remove an app: containers, route, images, repo and config",
        details: "Confirm with --force or by repeating the app name. Nothing of the app keeps running.",
    },
    Spec {
        name: "ps",
        topic: "ps",
        usage: "ps APP [--json]",
        summary: "the app's containers with state, release and address",
        details: "",
    },
    Spec {
        name: "ps:scale",
        topic: "ps",
        usage: "ps:scale APP NODE=N…",
        summary: "set how many containers each node runs",
        details: "Example: ps:scale myapp web=3 worker=0",
    },
    Spec {
        name: "ps:restart",
        topic: "ps",
        usage: "ps:restart APP [NODE]",
        summary: "restart the app's containers (or one node's)",
        details: "",
    },
    Spec {
        name: "ps:stop",
        topic: "ps",
        usage: "ps:stop APP",
        summary: "stop every container of the app and unroute it",
        details: "",
    },
    Spec {
        name: "ps:start",
        topic: "ps",
        usage: "ps:start APP",
        summary: "start a stopped app again",
        details: "",
    },
    Spec {
        name: "plan",
        topic: "ps",
        usage: "plan APP [--json]",
        summary: "show the launch instructions that would bring the app to its desired state (dry run)",
        details: "",
    },
    Spec {
        name: "config",
        topic: "config",
        usage: "config APP [--json]",
        summary: "show the app's config vars",
        details: "",
    },
    Spec {
        name: "config:get",
        topic: "config",
        usage: "config:get APP KEY",
        summary: "print one config var's value",
        details: "",
    },
    Spec {
        name: "config:set",
        topic: "config",
        usage: "config:set APP KEY=VALUE…",
        summary: "set config vars and roll out a new release",
        details: "KEY is upper-case letters, digits and '_'.",
    },
    Spec {
        name: "config:unset",
        topic: "config",
        usage: "config:unset APP KEY…",
        summary: "remove config vars and roll out a new release",
        details: "",
    },
    Spec {
        name: "volumes",
        topic: "ps",
        usage: "volumes APP [--json]",
        summary: "the app's service volumes, and whether their service still exists",
        details: "",
    },
    Spec {
        name: "volumes:remove",
        topic: "ps",
        usage: "volumes:remove APP SERVICE",
        summary: "delete the data of a service that is no longer in quarry.yml",
        details: "Refused while the service is defined: remove it from quarry.yml and push first.",
    },
    Spec {
        name: "domains",
        topic: "domains",
        usage: "domains APP [--json]",
        summary: "list the app's domains",
        details: "",
    },
    Spec {
        name: "domains:add",
        topic: "domains",
        usage: "domains:add APP DOMAIN…",
        summary: "route more domains to the app's web node",
        details: "",
    },
    Spec {
        name: "domains:remove",
        topic: "domains",
        usage: "domains:remove APP DOMAIN…",
        summary: "stop routing domains to the app",
        details: "",
    },
    Spec {
        name: "certs",
        topic: "certs",
        usage: "certs APP [--json]",
        summary: "the app's certificate: domains, issuer, expiry and state",
        details: "States: pending (no certificate yet), valid, expiring (renewed within 30 days of expiry), expired, failing (the last issuance failed; see the error and events).",
    },
    Spec {
        name: "certs:enable",
        topic: "certs",
        usage: "certs:enable APP",
        summary: "serve the app over HTTPS with a certificate from the ACME server, renewed automatically",
        details: "The certificate covers every domain routed to the app; a domain added later is added to it. The ACME server validates over HTTP (HTTP-01), so each domain's DNS must point at this server. See docs/tls.md.",
    },
    Spec {
        name: "certs:disable",
        topic: "certs",
        usage: "certs:disable APP",
        summary: "serve the app over plain HTTP only and forget its certificates",
        details: "",
    },
    Spec {
        name: "certs:add",
        topic: "certs",
        usage: "certs:add APP < fullchain-and-key.pem",
        summary: "serve the app with your own certificate",
        details: "Standard input holds the PEM chain (leaf first) and its unencrypted PKCS#8 key, e.g. `cat fullchain.pem key.pem | ssh … certs:add APP`. Refused when the key does not match, the certificate expired, or it names a domain that is not the app's. Quarry does not renew it.",
    },
    Spec {
        name: "certs:remove",
        topic: "certs",
        usage: "certs:remove APP",
        summary: "remove a certificate given with certs:add (the app goes back to HTTP)",
        details: "",
    },
    Spec {
        name: "certs:renew",
        topic: "certs",
        usage: "certs:renew APP [--force]",
        summary: "issue the app's certificate again now if it is due, or always with --force",
        details: "",
    },
    Spec {
        name: "logs",
        topic: "logs",
        usage: "logs APP [-n N] [-f] [--node NODE] [--cron JOB]",
        summary: "the app's container logs, merged and time-ordered",
        details: "-n N shows the last N lines (default 100); -f follows until you disconnect. --cron JOB shows the output of the scheduled job's last runs instead.",
    },
    Spec {
        name: "releases",
        topic: "releases",
        usage: "releases APP [--json]",
        summary: "list the app's releases",
        details: "",
    },
    Spec {
        name: "releases:info",
        topic: "releases",
        usage: "releases:info APP vN [--json]",
        summary: "show one release",
        details: "",
    },
    Spec {
        name: "rollback",
        topic: "releases",
        usage: "rollback APP [vN]",
        summary: "redeploy an earlier release as a new one",
        details: "Without vN, the release before the live one.",
    },
    Spec {
        name: "servers",
        topic: "servers",
        usage: "servers [--json]",
        summary: "list the servers of the grid",
        details: "",
    },
    Spec {
        name: "servers:info",
        topic: "servers",
        usage: "servers:info NAME [--json]",
        summary: "show one server",
        details: "",
    },
    Spec {
        name: "servers:add",
        topic: "servers",
        usage: "servers:add NAME (--docker unix:///path.sock|tcp://host:port [--tls-ca FILE --tls-cert FILE --tls-key FILE | --insecure] | --ssh [USER@]HOST[:PORT] [--host-key KEY] [--provision NAME …]) --address IP --memory MiB [--label k=v …]",
        summary: "add a server (a Docker engine) to the grid (admin)",
        details: "Quarry connects, reads the engine's facts, and places containers there from then on. Containers publish their ports on --address; nginx proxies to it. --memory is the size the grid fills. An engine on tcp:// with --tlsverify takes the three --tls-* files (PEM paths on the Quarry host; they are copied into servers/NAME/tls/); a tcp:// engine without TLS is refused unless --insecure says it sits on a trusted private network. With --ssh Quarry reaches the engine through one SSH session (`docker system dial-stdio` there; no Docker port, no certificates): authorize the key `keys:hq` prints, give --host-key 'ssh-ed25519 AAAA…' or let the first contact pin the key the server shows; --address defaults to an IP HOST; each --provision script runs there after it joins.",
    },
    Spec {
        name: "servers:provision",
        topic: "servers",
        usage: "servers:provision NAME [PROVISIONER …]",
        summary: "run provisioners on an SSH server again (admin)",
        details: "Without names: those whose script changed since they last ran there, that failed, or never ran there. Output streams as it comes; a failing script leaves the server unknown.",
    },
    Spec {
        name: "provisioners",
        topic: "servers",
        usage: "provisioners [--json]",
        summary: "list provisioner scripts with their sha1 and the servers they ran on (admin)",
        details: "",
    },
    Spec {
        name: "provisioners:add",
        topic: "servers",
        usage: "provisioners:add NAME < script.sh",
        summary: "store a provisioner script (admin; at most 1 MiB)",
        details: "Servers added with --ssh … --provision NAME run it with `sh -s` as the SSH user after they join; servers:provision runs it again.",
    },
    Spec {
        name: "provisioners:remove",
        topic: "servers",
        usage: "provisioners:remove NAME",
        summary: "forget a provisioner script (admin)",
        details: "",
    },
    Spec {
        name: "hosts",
        topic: "servers",
        usage: "hosts [--json]",
        summary: "the fleet's name → address map kept in the SSH servers' /etc/hosts (admin)",
        details: "Quarry keeps the block between `# quarry hosts begin` and `# quarry hosts end` and rewrites it when servers join or leave.",
    },
    Spec {
        name: "servers:drain",
        topic: "servers",
        usage: "servers:drain NAME",
        summary: "move every container off a server, with no downtime (admin)",
        details: "The server takes no new containers afterwards; remove it with servers:remove.",
    },
    Spec {
        name: "servers:remove",
        topic: "servers",
        usage: "servers:remove NAME",
        summary: "forget a server that holds no containers (admin)",
        details: "Drain it first with servers:drain.",
    },
    Spec {
        name: "grid",
        topic: "servers",
        usage: "grid [--json]",
        summary: "show where every container is placed",
        details: "",
    },
    Spec {
        name: "stacks",
        topic: "apps",
        usage: "stacks [--json]",
        summary: "list the stack images buildpack apps run on",
        details: "A missing default stack is built on the first push that needs it; `quarry stack build` on the Quarry host builds one ahead of time.",
    },
    Spec {
        name: "keys",
        topic: "keys",
        usage: "keys [--json]",
        summary: "list authorized keys (admin)",
        details: "",
    },
    Spec {
        name: "keys:add",
        topic: "keys",
        usage: "keys:add NAME --role admin|deployer [--apps a,b] [--create] < key.pub",
        summary: "authorize a public key (admin)",
        details: "The key is read from standard input. Deployers manage only the apps listed; --create lets them create apps.",
    },
    Spec {
        name: "keys:remove",
        topic: "keys",
        usage: "keys:remove NAME",
        summary: "revoke a key (admin)",
        details: "",
    },
    Spec {
        name: "keys:hq",
        topic: "keys",
        usage: "keys:hq",
        summary: "print the HQ's public key for the authorized_keys of servers added with --ssh (admin)",
        details: "The same as `quarry keys hq` on the Quarry host.",
    },
    Spec {
        name: "run",
        topic: "run",
        usage: "run APP [--node NODE] [--env K=V]… [--detach] [--timeout SECONDS] -- CMD [ARGS…]",
        summary: "run a command in a throwaway container of the live release",
        details: oneoff::RUN_HELP,
    },
    Spec {
        name: "enter",
        topic: "run",
        usage: "enter APP NODE.N [-- CMD [ARGS…]]",
        summary: "run a command (default /bin/sh) inside a running container",
        details: oneoff::ENTER_HELP,
    },
    Spec {
        name: "cron",
        topic: "cron",
        usage: "cron APP [--json]",
        summary: "the app's scheduled jobs: schedule, last run, next run",
        details: oneoff::CRON_HELP,
    },
    Spec {
        name: "cron:run",
        topic: "cron",
        usage: "cron:run APP JOB",
        summary: "start a scheduled job now and wait for it",
        details: "Runs JOB of the live release at once, like its schedule would, and prints its output and exit code. Refused while the same job is still running.",
    },
    Spec {
        name: "events",
        topic: "events",
        usage: "events [APP] [--json]",
        summary: "what happened: deploys, scaling, config and key changes",
        details: "",
    },
    Spec {
        name: "help",
        topic: "help",
        usage: "help [COMMAND]",
        summary: "this overview, or one command's help",
        details: "",
    },
];

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

/// Parse an exec line.
pub fn parse_line(line: &str) -> Result<Request, ParseError> {
    let words = shell_words::split(line)
        .map_err(|_| ParseError::usage("unbalanced quotes in the command line"))?;
    let Some((first, rest)) = words.split_first() else {
        return Err(ParseError::usage(
            "no command given; run `help` to see the commands",
        ));
    };
    let service = match first.as_str() {
        "git-receive-pack" => Some(GitService::ReceivePack),
        "git-upload-pack" => Some(GitService::UploadPack),
        _ => None,
    };
    if let Some(service) = service {
        let [path] = rest else {
            return Err(ParseError::usage(format!(
                "{first} takes one repository path"
            )));
        };
        return Ok(Request::Git {
            service,
            app: app_from_repo_path(path)?,
        });
    }
    parse_command(first, rest).map(Request::Command)
}

/// `/myapp.git`, `myapp`, `myapp.git/` → `myapp`.
fn app_from_repo_path(path: &str) -> Result<String, ParseError> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    let p = p.strip_suffix(".git").unwrap_or(p);
    validate::app_name(p).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(p.to_string())
}

/// The words after the command name, split into positionals and flags.
struct Args<'a> {
    command: &'static str,
    positionals: Vec<&'a str>,
    flags: Vec<&'a str>,
    options: BTreeMap<&'a str, &'a str>,
    /// Every occurrence of every option, in order (for repeatable ones).
    all: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    /// Split `words`; `flags` are switches, `options` take a value.
    fn split(
        command: &'static str,
        words: &'a [String],
        flags: &[&str],
        options: &[&str],
    ) -> Result<Args<'a>, ParseError> {
        let mut args = Args {
            command,
            positionals: Vec::new(),
            flags: Vec::new(),
            options: BTreeMap::new(),
            all: Vec::new(),
        };
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let w = w.as_str();
            if w.starts_with('-') && w.len() > 1 {
                let (name, inline) = match w.split_once('=') {
                    Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                    _ => (w, None),
                };
                if flags.contains(&name) && inline.is_none() {
                    args.flags.push(name);
                } else if options.contains(&name) {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().map(String::as_str).ok_or_else(|| {
                            ParseError::usage(format!("{command}: {name} needs a value"))
                        })?,
                    };
                    args.options.insert(name, value);
                    args.all.push((name, value));
                } else {
                    return Err(ParseError::usage(format!(
                        "{command}: unknown option {w}; usage: {}",
                        spec(command).map_or("", |s| s.usage)
                    )));
                }
            } else {
                args.positionals.push(w);
            }
        }
        Ok(args)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    fn usage_error(&self, what: &str) -> ParseError {
        ParseError::usage(format!(
            "{}: {what}; usage: {}",
            self.command,
            spec(self.command).map_or("", |s| s.usage)
        ))
    }

    /// Exactly `n` positionals.
    fn exactly(&self, n: usize) -> Result<&[&'a str], ParseError> {
        match self.positionals.len().cmp(&n) {
            std::cmp::Ordering::Equal => Ok(&self.positionals),
            std::cmp::Ordering::Less => Err(self.usage_error("missing argument")),
            std::cmp::Ordering::Greater => {
                Err(self.usage_error(&format!("unexpected argument {:?}", self.positionals[n])))
            }
        }
    }

    /// At least `n` positionals.
    fn at_least(&self, n: usize) -> Result<&[&'a str], ParseError> {
        if self.positionals.len() < n {
            Err(self.usage_error("missing argument"))
        } else {
            Ok(&self.positionals)
        }
    }
}

fn app(s: &str) -> Result<String, ParseError> {
    validate::app_name(s).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(s.to_string())
}

fn node(s: &str) -> Result<String, ParseError> {
    validate::process_name("node name", s).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(s.to_string())
}

fn env_key(s: &str) -> Result<String, ParseError> {
    validate::env_key(s).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(s.to_string())
}

fn server_name(s: &str) -> Result<String, ParseError> {
    validate::key_name(s)
        .map_err(|e| ParseError::usage(e.to_string().replace("key name", "server name")))?;
    Ok(s.to_string())
}

fn domain(s: &str) -> Result<String, ParseError> {
    validate::domain(s).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(s.to_string())
}

fn release(s: &str) -> Result<u32, ParseError> {
    validate::release_id(s).map_err(|e| ParseError::usage(e.to_string()))
}

fn parse_command(name: &str, words: &[String]) -> Result<Cmd, ParseError> {
    let Some(spec) = spec(name) else {
        return Err(ParseError::usage(format!(
            "unknown command {:?}; run `help` to see the commands",
            name.chars().take(60).collect::<String>()
        )));
    };
    let command = spec.name;
    // After `--` come the words of a command to run, which may have their own --help.
    if words
        .iter()
        .take_while(|w| *w != "--")
        .any(|w| w == "--help" || w == "-h")
    {
        return Ok(Cmd::CommandHelp { name: command });
    }
    if let Some(parsed) = remote::parse(command, words) {
        return parsed;
    }
    let json = &["--json"][..];
    let cmd = match command {
        "help" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.positionals.clone();
            if p.len() > 1 {
                return Err(a.usage_error("too many arguments"));
            }
            Cmd::Help {
                topic: p.first().map(|s| s.to_string()),
            }
        }
        // Read commands of the whole instance: no arguments, only --json.
        "apps" | "servers" | "grid" | "stacks" | "keys" => {
            let a = Args::split(command, words, json, &[])?;
            a.exactly(0)?;
            let json = a.flag("--json");
            match command {
                "apps" => Cmd::Apps { json },
                "servers" => Cmd::Servers { json },
                "grid" => Cmd::Grid { json },
                "stacks" => Cmd::Stacks { json },
                _ => Cmd::Keys { json },
            }
        }
        "apps:create" => {
            let a = Args::split(command, words, &[], &[])?;
            Cmd::AppsCreate {
                app: app(a.exactly(1)?[0])?,
            }
        }
        "apps:destroy" => {
            let a = Args::split(command, words, &["--force"], &[])?;
            let p = a.at_least(1)?;
            let name = app(p[0])?;
            let confirmed = match p.len() {
                1 => a.flag("--force"),
                2 => p[1] == p[0],
                _ => return Err(a.usage_error("too many arguments")),
            };
            if !confirmed {
                return Err(ParseError::usage(format!(
                    "apps:destroy: this removes {name} for good; confirm with `apps:destroy {name} --force` or `apps:destroy {name} {name}`"
                )));
            }
            Cmd::AppsDestroy { app: name }
        }
        "ps" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Ps {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "ps:scale" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(2)?;
            let mut scale = BTreeMap::new();
            for w in &p[1..] {
                let (n, count) = w
                    .split_once('=')
                    .ok_or_else(|| a.usage_error(&format!("expected NODE=N, found {w:?}")))?;
                let count: u32 = count.parse().ok().filter(|c| *c <= 100).ok_or_else(|| {
                    a.usage_error(&format!(
                        "{n}: scale must be a whole number from 0 to 100, found {count:?}"
                    ))
                })?;
                scale.insert(node(n)?, count);
            }
            Cmd::PsScale {
                app: app(p[0])?,
                scale,
            }
        }
        "ps:restart" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(1)?;
            if p.len() > 2 {
                return Err(a.usage_error("too many arguments"));
            }
            Cmd::PsRestart {
                app: app(p[0])?,
                node: p.get(1).map(|n| node(n)).transpose()?,
            }
        }
        "ps:stop" => {
            let a = Args::split(command, words, &[], &[])?;
            Cmd::PsStop {
                app: app(a.exactly(1)?[0])?,
            }
        }
        "ps:start" => {
            let a = Args::split(command, words, &[], &[])?;
            Cmd::PsStart {
                app: app(a.exactly(1)?[0])?,
            }
        }
        "plan" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Plan {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "config" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Config {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "config:get" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.exactly(2)?;
            Cmd::ConfigGet {
                app: app(p[0])?,
                key: env_key(p[1])?,
            }
        }
        "config:set" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(2)?;
            let mut vars = BTreeMap::new();
            for w in &p[1..] {
                let (k, v) = w.split_once('=').ok_or_else(|| {
                    a.usage_error(&format!(
                        "expected KEY=VALUE, found {:?}",
                        w.chars().take(60).collect::<String>()
                    ))
                })?;
                let k = env_key(k)?;
                validate::env_value(&k, v).map_err(|e| ParseError::usage(format!("{k}: {e}")))?;
                vars.insert(k, v.to_string());
            }
            Cmd::ConfigSet {
                app: app(p[0])?,
                vars,
            }
        }
        "config:unset" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(2)?;
            Cmd::ConfigUnset {
                app: app(p[0])?,
                keys: p[1..]
                    .iter()
                    .map(|k| env_key(k))
                    .collect::<Result<_, _>>()?,
            }
        }
        "domains" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Domains {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "domains:add" | "domains:remove" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(2)?;
            let app = app(p[0])?;
            let domains = p[1..]
                .iter()
                .map(|d| domain(d))
                .collect::<Result<Vec<_>, _>>()?;
            if command == "domains:add" {
                Cmd::DomainsAdd { app, domains }
            } else {
                Cmd::DomainsRemove { app, domains }
            }
        }
        "logs" => {
            let a = Args::split(
                command,
                words,
                &["-f", "--follow"],
                &["-n", "--num", "--node", "--cron"],
            )?;
            let lines = match a.options.get("-n").or(a.options.get("--num")) {
                Some(n) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        a.usage_error(&format!("-n takes a number from 1 to 100000, found {n:?}"))
                    })?,
                None => 100,
            };
            Cmd::Logs {
                app: app(a.exactly(1)?[0])?,
                lines,
                follow: a.flag("-f") || a.flag("--follow"),
                node: a.options.get("--node").map(|n| node(n)).transpose()?,
                cron: a
                    .options
                    .get("--cron")
                    .map(|j| {
                        validate::process_name("job name", j)
                            .map_err(|e| ParseError::usage(e.to_string()))?;
                        Ok::<_, ParseError>(j.to_string())
                    })
                    .transpose()?,
            }
        }
        "releases" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Releases {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "releases:info" => {
            let a = Args::split(command, words, json, &[])?;
            let p = a.exactly(2)?;
            Cmd::ReleasesInfo {
                app: app(p[0])?,
                release: release(p[1])?,
                json: a.flag("--json"),
            }
        }
        "rollback" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.at_least(1)?;
            if p.len() > 2 {
                return Err(a.usage_error("too many arguments"));
            }
            Cmd::Rollback {
                app: app(p[0])?,
                release: p.get(1).map(|r| release(r)).transpose()?,
            }
        }
        "servers:info" => {
            let a = Args::split(command, words, json, &[])?;
            let name = a.exactly(1)?[0];
            validate::key_name(name)
                .map_err(|e| ParseError::usage(e.to_string().replace("key name", "server name")))?;
            Cmd::ServersInfo {
                name: name.to_string(),
                json: a.flag("--json"),
            }
        }
        "servers:add" => {
            let a = Args::split(
                command,
                words,
                &["--insecure"],
                &[
                    "--docker",
                    "--ssh",
                    "--host-key",
                    "--provision",
                    "--address",
                    "--memory",
                    "--label",
                    "--tls-ca",
                    "--tls-cert",
                    "--tls-key",
                ],
            )?;
            let name = server_name(a.exactly(1)?[0])?;
            let ssh = match (a.options.get("--ssh"), a.options.get("--docker")) {
                (Some(_), Some(_)) => {
                    return Err(a.usage_error("--ssh and --docker exclude each other"));
                }
                (Some(t), None) => Some(Box::new(remote::ssh_target(
                    &a,
                    t,
                    a.options.get("--host-key").copied(),
                )?)),
                (None, _) if a.options.contains_key("--host-key") => {
                    return Err(a.usage_error("--host-key goes with --ssh"));
                }
                (None, _) => None,
            };
            let provision = a
                .all
                .iter()
                .filter(|(o, _)| *o == "--provision")
                .map(|(_, n)| {
                    crate::provision::check_name(n)
                        .map(|()| n.to_string())
                        .map_err(|e| a.usage_error(&e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ssh.is_none() && !provision.is_empty() {
                return Err(a.usage_error("--provision runs over SSH: it needs --ssh"));
            }
            let docker = match &ssh {
                Some(_) => "unix:///",
                None => a
                    .options
                    .get("--docker")
                    .copied()
                    .ok_or_else(|| a.usage_error("--docker or --ssh is required"))?,
            };
            if !(docker.starts_with("unix:///") || docker.starts_with("tcp://"))
                || docker.len() > 512
                || docker.chars().any(char::is_whitespace)
            {
                return Err(a.usage_error(&format!(
                    "--docker takes unix:///path.sock or tcp://host:port, found {docker:?}"
                )));
            }
            let address = match (a.options.get("--address"), &ssh) {
                (Some(address), _) => address
                    .parse()
                    .map_err(|_| a.usage_error("--address takes an IP address such as 10.0.0.5"))?,
                (None, Some(t)) => t.host.parse().map_err(|_| {
                    a.usage_error("--address is required with a host name in --ssh")
                })?,
                (None, None) => return Err(a.usage_error("--address is required")),
            };
            let memory = a
                .options
                .get("--memory")
                .ok_or_else(|| a.usage_error("--memory is required"))?
                .parse::<u64>()
                .ok()
                .filter(|m| (64..=16 * 1024 * 1024).contains(m))
                .ok_or_else(|| a.usage_error("--memory takes MiB, from 64 to 16777216"))?;
            let mut labels = BTreeMap::new();
            for (opt, value) in &a.all {
                if *opt != "--label" {
                    continue;
                }
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    a.usage_error(&format!("--label takes key=value, found {value:?}"))
                })?;
                let ok = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 63
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                };
                if !ok(k) || !ok(v) {
                    return Err(a.usage_error(&format!(
                        "--label {value:?}: use letters, digits, '-', '_' and '.'"
                    )));
                }
                labels.insert(k.to_string(), v.to_string());
            }
            let tls_flags = ["--tls-ca", "--tls-cert", "--tls-key"].map(|f| a.options.get(f));
            let tls = match tls_flags {
                [None, None, None] => None,
                [Some(ca), Some(cert), Some(key)] => {
                    if !docker.starts_with("tcp://") {
                        return Err(
                            a.usage_error("--tls-* files are for a tcp:// --docker endpoint")
                        );
                    }
                    let file = |flag: &str, v: &str| {
                        if v.starts_with('/') && v.len() <= 4096 && !v.contains("/../") {
                            Ok(std::path::PathBuf::from(v))
                        } else {
                            Err(a.usage_error(&format!(
                                "{flag} takes an absolute path on the Quarry host, found {v:?}"
                            )))
                        }
                    };
                    Some(crate::fleet::TlsFiles {
                        ca: file("--tls-ca", ca)?,
                        cert: file("--tls-cert", cert)?,
                        key: file("--tls-key", key)?,
                    })
                }
                _ => {
                    return Err(
                        a.usage_error("TLS needs all three of --tls-ca, --tls-cert and --tls-key")
                    );
                }
            };
            let insecure = a.flag("--insecure");
            if ssh.is_some() && (insecure || tls.is_some()) {
                return Err(a.usage_error(
                    "--insecure and --tls-* are for --docker tcp:// engines; --ssh needs neither",
                ));
            }
            crate::fleet::check_transport(docker, tls.is_some(), insecure)
                .map_err(|e| a.usage_error(&e))?;
            Cmd::ServersAdd(NewServer {
                name,
                docker: if ssh.is_some() {
                    String::new()
                } else {
                    docker.to_string()
                },
                address,
                memory,
                labels,
                tls,
                insecure,
                ssh,
                provision,
            })
        }
        "servers:drain" | "servers:remove" => {
            let a = Args::split(command, words, &[], &[])?;
            let name = server_name(a.exactly(1)?[0])?;
            if command == "servers:drain" {
                Cmd::ServersDrain { name }
            } else {
                Cmd::ServersRemove { name }
            }
        }
        "keys:add" => {
            let a = Args::split(command, words, &["--create"], &["--role", "--apps"])?;
            let name = a.exactly(1)?[0];
            validate::key_name(name).map_err(|e| ParseError::usage(e.to_string()))?;
            let role = match a.options.get("--role").copied() {
                Some("admin") => crate::store::Role::Admin,
                Some("deployer") => crate::store::Role::Deployer,
                Some(other) => {
                    return Err(
                        a.usage_error(&format!("--role is admin or deployer, found {other:?}"))
                    );
                }
                None => return Err(a.usage_error("--role is required")),
            };
            let apps = match a.options.get("--apps") {
                Some(list) => list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(app)
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            Cmd::KeysAdd {
                name: name.to_string(),
                role,
                apps,
                create: a.flag("--create"),
            }
        }
        "keys:remove" => {
            let a = Args::split(command, words, &[], &[])?;
            let name = a.exactly(1)?[0];
            validate::key_name(name).map_err(|e| ParseError::usage(e.to_string()))?;
            Cmd::KeysRemove {
                name: name.to_string(),
            }
        }
        "volumes" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Volumes {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "volumes:remove" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.exactly(2)?;
            validate::process_name("service name", p[1])
                .map_err(|e| ParseError::usage(e.to_string()))?;
            Cmd::VolumesRemove {
                app: app(p[0])?,
                service: p[1].to_string(),
            }
        }
        "run" => oneoff::run(command, words)?,
        "enter" => oneoff::enter(command, words)?,
        "cron" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Cron {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "cron:run" => {
            let a = Args::split(command, words, &[], &[])?;
            let p = a.exactly(2)?;
            validate::process_name("job name", p[1])
                .map_err(|e| ParseError::usage(e.to_string()))?;
            Cmd::CronRun {
                app: app(p[0])?,
                job: p[1].to_string(),
            }
        }
        "events" => {
            let a = Args::split(command, words, json, &[])?;
            let p = a.positionals.clone();
            if p.len() > 1 {
                return Err(a.usage_error("too many arguments"));
            }
            Cmd::Events {
                app: p.first().map(|s| app(s)).transpose()?,
                json: a.flag("--json"),
            }
        }
        "certs" => {
            let a = Args::split(command, words, json, &[])?;
            Cmd::Certs {
                app: app(a.exactly(1)?[0])?,
                json: a.flag("--json"),
            }
        }
        "certs:enable" | "certs:disable" | "certs:add" | "certs:remove" => {
            let a = Args::split(command, words, &[], &[])?;
            let app = app(a.exactly(1)?[0])?;
            match command {
                "certs:enable" => Cmd::CertsEnable { app },
                "certs:disable" => Cmd::CertsDisable { app },
                "certs:add" => Cmd::CertsAdd { app },
                _ => Cmd::CertsRemove { app },
            }
        }
        "certs:renew" => {
            let a = Args::split(command, words, &["--force"], &[])?;
            Cmd::CertsRenew {
                app: app(a.exactly(1)?[0])?,
                force: a.flag("--force"),
            }
        }
        other => unreachable!("command {other} is in SPECS but not parsed"),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Cmd {
        match parse_line(line).unwrap() {
            Request::Command(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn err(line: &str) -> String {
        parse_line(line).unwrap_err().message
    }

    #[test]
    fn a_plain_tcp_server_is_refused_without_insecure() {
        let add = "servers:add s2 --docker tcp://10.0.0.5:2375 --address 10.0.0.5 --memory 512";
        assert_eq!(
            err(add),
            format!(
                "servers:add: tcp://10.0.0.5:2375 has no TLS: anyone who reaches it controls that Docker engine; give --tls-ca, --tls-cert and --tls-key (dockerd --tlsverify), or --insecure for an engine on a trusted private network; usage: {}",
                spec("servers:add").unwrap().usage
            )
        );
        match cmd(&format!("{add} --insecure")) {
            Cmd::ServersAdd(new) => assert!(new.insecure && new.tls.is_none()),
            other => panic!("{other:?}"),
        }
        match cmd("servers:add s3 --docker unix:///run/d.sock --address 10.0.0.6 --memory 512") {
            Cmd::ServersAdd(new) => assert!(!new.insecure),
            other => panic!("{other:?}"),
        }
        assert!(
            err("servers:add s3 --docker unix:///run/d.sock --address 10.0.0.6 --memory 512 --insecure")
                .contains("--insecure is for a tcp:// engine without TLS, not unix:///run/d.sock")
        );
    }

    #[test]
    fn git_paths() {
        for (line, want) in [
            ("git-receive-pack '/myapp'", "myapp"),
            ("git-receive-pack 'myapp.git'", "myapp"),
            ("git-receive-pack '/myapp.git/'", "myapp"),
            ("git-upload-pack '/my-app'", "my-app"),
        ] {
            match parse_line(line).unwrap() {
                Request::Git { app, .. } => assert_eq!(app, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn hostile_repo_paths_are_refused() {
        for line in [
            "git-receive-pack '../x'",
            "git-receive-pack '/a;b'",
            "git-receive-pack 'UPPER'",
            "git-receive-pack '/stacks/../../etc'",
            "git-receive-pack '$(reboot)'",
            "git-receive-pack",
        ] {
            assert!(parse_line(line).is_err(), "{line}");
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(cmd("apps --json"), Cmd::Apps { json: true });
        assert_eq!(
            cmd("ps:scale app web=3 worker=0"),
            Cmd::PsScale {
                app: "app".into(),
                scale: [("web".to_string(), 3), ("worker".to_string(), 0)].into()
            }
        );
        assert_eq!(
            cmd("config:set app 'GREETING=hello world' B=x=y"),
            Cmd::ConfigSet {
                app: "app".into(),
                vars: [
                    ("GREETING".to_string(), "hello world".to_string()),
                    ("B".to_string(), "x=y".to_string())
                ]
                .into()
            }
        );
        assert_eq!(
            cmd("logs app -n 5 -f --node web"),
            Cmd::Logs {
                app: "app".into(),
                lines: 5,
                follow: true,
                node: Some("web".into()),
                cron: None,
            }
        );
        assert_eq!(
            cmd("logs app --cron nightly"),
            Cmd::Logs {
                app: "app".into(),
                lines: 100,
                follow: false,
                node: None,
                cron: Some("nightly".into()),
            }
        );
        assert_eq!(
            cmd("rollback app v2"),
            Cmd::Rollback {
                app: "app".into(),
                release: Some(2)
            }
        );
        assert_eq!(cmd("ps --help"), Cmd::CommandHelp { name: "ps" });
        assert_eq!(
            cmd("apps:destroy a a"),
            Cmd::AppsDestroy { app: "a".into() }
        );
    }

    #[test]
    fn errors_name_what_was_wrong() {
        assert_eq!(
            err("frobnicate"),
            "unknown command \"frobnicate\"; run `help` to see the commands"
        );
        assert_eq!(err("ps"), "ps: missing argument; usage: ps APP [--json]");
        assert_eq!(
            err("ps a b"),
            "ps: unexpected argument \"b\"; usage: ps APP [--json]"
        );
        assert_eq!(
            err("ps a --bogus"),
            "ps: unknown option --bogus; usage: ps APP [--json]"
        );
        assert!(err("ps:scale a web=two").contains("web: scale must be a whole number"));
        assert!(err("domains:add a 'x.com;include /etc/passwd'").starts_with("invalid domain"));
        assert!(err("config:set a lower=1").starts_with("invalid env key"));
        assert!(err("apps:destroy a").contains("confirm with"));
        assert_eq!(err(""), "no command given; run `help` to see the commands");
        assert_eq!(err("ps 'a"), "unbalanced quotes in the command line");
    }

    #[test]
    fn certs_commands() {
        assert_eq!(
            cmd("certs shop --json"),
            Cmd::Certs {
                app: "shop".into(),
                json: true
            }
        );
        assert_eq!(
            cmd("certs:enable shop"),
            Cmd::CertsEnable { app: "shop".into() }
        );
        assert_eq!(cmd("certs:add shop"), Cmd::CertsAdd { app: "shop".into() });
        assert_eq!(
            cmd("certs:renew shop --force"),
            Cmd::CertsRenew {
                app: "shop".into(),
                force: true
            }
        );
        assert_eq!(
            err("certs:add shop --cert a.pem"),
            "certs:add: unknown option --cert; usage: certs:add APP < fullchain-and-key.pem"
        );
        assert_eq!(
            err("certs:disable"),
            "certs:disable: missing argument; usage: certs:disable APP"
        );
    }

    #[test]
    fn every_spec_parses_its_help() {
        for s in SPECS {
            assert_eq!(
                cmd(&format!("{} --help", s.name)),
                Cmd::CommandHelp { name: s.name }
            );
        }
    }
}
