//! Parsing of SSH exec requests into one closed enum.
//!
//! The line is split like a POSIX shell would split words (quotes honoured)
//! but nothing is ever run by a shell: each word becomes a typed, validated
//! field. Every command's usage and help text lives in [`SPECS`] (`specs`),
//! which also drives `help` and `<command> --help` and defines [`Name`], the
//! enum [`parse_command`] matches without a catch-all. The topic files parse
//! the commands that take more than an app name. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use crate::validate::{self, AppName, Domain, EnvKey};

mod apps;
mod args;
mod fleet;
mod oneoff;
mod releases;
mod remote;
mod specs;

pub use crate::endpoint::NewServer;
use args::{app, app_and_many, app_json, app_only, domain, env_key, json_only, server_only};
pub use oneoff::{DEFAULT_TIMEOUT_SECS as RUN_TIMEOUT_SECS, RunArgs};
pub use specs::{Name, SPECS, Spec, command_help, overview, spec};

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
        app: AppName,
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
        app: AppName,
    },
    AppsDestroy {
        app: AppName,
    },
    Ps {
        app: AppName,
        json: bool,
    },
    PsScale {
        app: AppName,
        scale: BTreeMap<String, u32>,
    },
    PsRestart {
        app: AppName,
        node: Option<String>,
    },
    PsStop {
        app: AppName,
    },
    PsStart {
        app: AppName,
    },
    Plan {
        app: AppName,
        json: bool,
    },
    Config {
        app: AppName,
        json: bool,
    },
    ConfigGet {
        app: AppName,
        key: EnvKey,
    },
    ConfigSet {
        app: AppName,
        vars: BTreeMap<EnvKey, String>,
    },
    ConfigUnset {
        app: AppName,
        keys: Vec<EnvKey>,
    },
    Domains {
        app: AppName,
        json: bool,
    },
    DomainsAdd {
        app: AppName,
        domains: Vec<Domain>,
    },
    DomainsRemove {
        app: AppName,
        domains: Vec<Domain>,
    },
    Logs {
        app: AppName,
        lines: usize,
        follow: bool,
        node: Option<String>,
        /// The output of a scheduled job's runs instead of the containers'.
        cron: Option<String>,
    },
    Releases {
        app: AppName,
        json: bool,
    },
    ReleasesInfo {
        app: AppName,
        release: u32,
        json: bool,
    },
    Rollback {
        app: AppName,
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
    /// `network`: the lockdown's state on every server.
    Network {
        json: bool,
    },
    /// `network:unlock` / `network:lock`.
    NetworkLock {
        lock: bool,
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
        apps: Vec<AppName>,
        create: bool,
    },
    KeysRemove {
        name: String,
    },
    Events {
        app: Option<AppName>,
        json: bool,
    },
    Volumes {
        app: AppName,
        json: bool,
    },
    VolumesRemove {
        app: AppName,
        service: String,
    },
    /// `run`: a one-off container of the live release.
    Run(oneoff::RunArgs),
    /// `enter`: a process in a running container.
    Enter {
        app: AppName,
        node: String,
        index: u32,
        command: Option<crate::manifest::Command>,
    },
    Cron {
        app: AppName,
        json: bool,
    },
    CronRun {
        app: AppName,
        job: String,
    },
    Certs {
        app: AppName,
        json: bool,
    },
    CertsEnable {
        app: AppName,
    },
    CertsDisable {
        app: AppName,
    },
    /// The chain and key come on standard input.
    CertsAdd {
        app: AppName,
        /// PEM files on the Quarry host (admins only); else standard input.
        files: Option<CertFiles>,
    },
    CertsRemove {
        app: AppName,
    },
    CertsRenew {
        app: AppName,
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

/// `certs:add --cert FILE --key FILE`: absolute paths on the Quarry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A refused line: the message and the exit code class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub code: u32,
}

impl ParseError {
    pub(crate) fn usage(message: impl Into<String>) -> ParseError {
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
fn app_from_repo_path(path: &str) -> Result<AppName, ParseError> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    let p = p.strip_suffix(".git").unwrap_or(p);
    validate::app_name(p).map_err(|e| ParseError::usage(e.to_string()))
}

fn parse_command(name: &str, words: &[String]) -> Result<Cmd, ParseError> {
    let Some(spec) = spec(name) else {
        return Err(ParseError::usage(format!(
            "unknown command {:?}; run `help` to see the commands",
            name.chars().take(60).collect::<String>()
        )));
    };
    let c = spec.name;
    // After `--` come the words of a command to run, which may have their own --help.
    if words
        .iter()
        .take_while(|w| *w != "--")
        .any(|w| w == "--help" || w == "-h")
    {
        return Ok(Cmd::CommandHelp { name: c });
    }
    let w = words;
    Ok(match spec.id {
        Name::Help => {
            let a = args::Args::split(c, w, &[], &[])?;
            Cmd::Help {
                topic: args::optional_one(&a)?.map(str::to_string),
            }
        }
        Name::Apps => Cmd::Apps {
            json: json_only(c, w)?,
        },
        Name::Servers => Cmd::Servers {
            json: json_only(c, w)?,
        },
        Name::Grid => Cmd::Grid {
            json: json_only(c, w)?,
        },
        Name::Network => Cmd::Network {
            json: json_only(c, w)?,
        },
        Name::NetworkUnlock => {
            args::Args::split(c, w, &[], &[])?.exactly(0)?;
            Cmd::NetworkLock { lock: false }
        }
        Name::NetworkLock => {
            args::Args::split(c, w, &[], &[])?.exactly(0)?;
            Cmd::NetworkLock { lock: true }
        }
        Name::Stacks => Cmd::Stacks {
            json: json_only(c, w)?,
        },
        Name::Keys => Cmd::Keys {
            json: json_only(c, w)?,
        },
        Name::AppsCreate => Cmd::AppsCreate {
            app: app_only(c, w)?,
        },
        Name::AppsDestroy => apps::destroy(c, w)?,
        Name::Ps => {
            let (app, json) = app_json(c, w)?;
            Cmd::Ps { app, json }
        }
        Name::PsScale => apps::scale(c, w)?,
        Name::PsRestart => apps::restart(c, w)?,
        Name::PsStop => Cmd::PsStop {
            app: app_only(c, w)?,
        },
        Name::PsStart => Cmd::PsStart {
            app: app_only(c, w)?,
        },
        Name::Plan => {
            let (app, json) = app_json(c, w)?;
            Cmd::Plan { app, json }
        }
        Name::Config => {
            let (app, json) = app_json(c, w)?;
            Cmd::Config { app, json }
        }
        Name::ConfigGet => apps::config_get(c, w)?,
        Name::ConfigSet => apps::config_set(c, w)?,
        Name::ConfigUnset => {
            let (app, keys) = app_and_many(c, w, env_key)?;
            Cmd::ConfigUnset { app, keys }
        }
        Name::Volumes => {
            let (app, json) = app_json(c, w)?;
            Cmd::Volumes { app, json }
        }
        Name::VolumesRemove => apps::volumes_remove(c, w)?,
        Name::Domains => {
            let (app, json) = app_json(c, w)?;
            Cmd::Domains { app, json }
        }
        Name::DomainsAdd => {
            let (app, domains) = app_and_many(c, w, domain)?;
            Cmd::DomainsAdd { app, domains }
        }
        Name::DomainsRemove => {
            let (app, domains) = app_and_many(c, w, domain)?;
            Cmd::DomainsRemove { app, domains }
        }
        Name::Certs => {
            let (app, json) = app_json(c, w)?;
            Cmd::Certs { app, json }
        }
        Name::CertsEnable => Cmd::CertsEnable {
            app: app_only(c, w)?,
        },
        Name::CertsDisable => Cmd::CertsDisable {
            app: app_only(c, w)?,
        },
        Name::CertsAdd => apps::certs_add(c, w)?,
        Name::CertsRemove => Cmd::CertsRemove {
            app: app_only(c, w)?,
        },
        Name::CertsRenew => {
            let a = args::Args::split(c, w, &["--force"], &[])?;
            Cmd::CertsRenew {
                app: app(a.exactly(1)?[0])?,
                force: a.flag("--force"),
            }
        }
        Name::Logs => releases::logs(c, w)?,
        Name::Releases => {
            let (app, json) = app_json(c, w)?;
            Cmd::Releases { app, json }
        }
        Name::ReleasesInfo => releases::info(c, w)?,
        Name::Rollback => releases::rollback(c, w)?,
        Name::Events => releases::events(c, w)?,
        Name::ServersInfo => fleet::servers_info(c, w)?,
        Name::ServersAdd => fleet::servers_add(c, w)?,
        Name::ServersDrain => Cmd::ServersDrain {
            name: server_only(c, w)?,
        },
        Name::ServersRemove => Cmd::ServersRemove {
            name: server_only(c, w)?,
        },
        Name::KeysAdd => fleet::keys_add(c, w)?,
        Name::KeysRemove => fleet::keys_remove(c, w)?,
        Name::Run => oneoff::run(c, w)?,
        Name::Enter => oneoff::enter(c, w)?,
        Name::Cron => {
            let (app, json) = app_json(c, w)?;
            Cmd::Cron { app, json }
        }
        Name::CronRun => oneoff::cron_run(c, w)?,
        Name::KeysHq => remote::keys_hq(c, w)?,
        Name::Hosts => Cmd::Hosts {
            json: json_only(c, w)?,
        },
        Name::Provisioners => Cmd::Provisioners {
            json: json_only(c, w)?,
        },
        Name::ProvisionersAdd => Cmd::ProvisionersAdd {
            name: remote::provisioner_named(c, w)?,
        },
        Name::ProvisionersRemove => Cmd::ProvisionersRemove {
            name: remote::provisioner_named(c, w)?,
        },
        Name::ServersProvision => remote::servers_provision(c, w)?,
    })
}

#[cfg(test)]
mod tests;
