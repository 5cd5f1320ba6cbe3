//! The `quarry` binary: parses flags and calls into the library.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quarry::store::{KeyRecord, Role, Store, now_rfc3339, parse_public_key};

/// Quarry: git push to deploy, on your own servers.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: SSH endpoint for pushes and commands, its own nginx.
    Serve {
        /// Data directory (all state lives here).
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
        /// SSH listen address (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:2222")]
        ssh: SocketAddr,
        /// HTTP listen address of Quarry's nginx (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// HTTPS listen address of Quarry's nginx (port 0 picks a free port;
        /// `off`: no HTTPS).
        #[arg(long, default_value = "127.0.0.1:8443", value_parser = parse_https)]
        https: Https,
        /// Address this server's containers publish their ports on (nginx
        /// proxies to it); never the public interface.
        #[arg(long, default_value = "127.0.0.1")]
        publish: std::net::IpAddr,
        /// Apps answer at <app>.<root-domain>.
        #[arg(long, default_value = "localhost")]
        root_domain: String,
        /// The nginx binary to run.
        #[arg(long, default_value = "nginx")]
        nginx: PathBuf,
    },
    /// Manage authorized keys on this machine (works with the daemon stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Stack images: the Debian root file systems buildpack builds run on.
    Stack {
        #[command(subcommand)]
        command: StackCommand,
    },
    /// Install Quarry as a systemd service on this machine (root; Debian/Ubuntu)
    ///
    /// Copies this binary to /usr/local/bin/quarry, makes /var/lib/quarry
    /// (0700), writes /etc/systemd/system/quarry.service, then enables and
    /// starts it (or restarts it: an upgrade in place). See docs/install.md.
    #[command(verbatim_doc_comment)]
    Install {
        /// Write under this scratch root instead of / (nothing is started).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Change nothing: verify the unit and report what is missing.
        #[arg(long)]
        check: bool,
        /// The service's SSH listen address.
        #[arg(long, default_value = "0.0.0.0:2222")]
        ssh: String,
        /// The service's HTTP listen address.
        #[arg(long, default_value = "0.0.0.0:80")]
        http: String,
        /// The service's HTTPS listen address.
        #[arg(long, default_value = "0.0.0.0:443")]
        https: String,
        /// Apps answer at <app>.<root-domain>.
        #[arg(long, default_value = "localhost")]
        root_domain: String,
    },
    /// Stop and remove the service and the binary (--purge: the data too).
    Uninstall {
        /// Remove /var/lib/quarry as well: every app's repo, config and releases.
        #[arg(long)]
        purge: bool,
        /// A scratch root written by `quarry install --root`.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Internal: run by the repositories' pre-receive hook.
    #[command(hide = true)]
    Hook {
        /// The hook name (pre-receive).
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Authorize the public key given on standard input.
    Add {
        /// A name for the key: lower-case letters, digits and '-'.
        name: String,
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
        #[arg(long, value_enum, default_value_t = Role::Admin)]
        role: Role,
        /// Apps a deployer may push and manage (comma-separated).
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
        /// Let a deployer create apps.
        #[arg(long)]
        create: bool,
    },
    /// List authorized keys.
    List {
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
    },
    /// Print the HQ's public key (made on first use), for the
    /// authorized_keys of servers added with `servers:add --ssh`.
    Hq {
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
    },
    /// Revoke a key.
    Remove {
        name: String,
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum StackCommand {
    /// Build a stack image on the local Docker engine (no registry needed)
    ///
    /// Without --from: debootstrap a minimal Debian bookworm (or the --suite,
    /// or the suite NAME names: quarry-stack/trixie) from the mirror this
    /// machine's apt uses (installs debootstrap if missing), add python3,
    /// python3-venv, pip, nodejs, npm, CA certificates (the host's own too),
    /// the user app (uid 65000) and /usr/local/bin/quarry-entrypoint, then
    /// `docker import` it. Takes 2-4 minutes; needs root. With --from IMAGE:
    /// the same on top of a Debian-based image already on the engine.
    /// Pushes build the default stack on first need; this builds it ahead.
    #[command(verbatim_doc_comment)]
    Build {
        /// The image: NAME (under quarry-stack/) or quarry-stack/NAME[:TAG].
        #[arg(default_value = quarry::stackimage::DEFAULT_STACK)]
        name: String,
        /// Build again even if the image exists.
        #[arg(long)]
        force: bool,
        /// Build on top of this Debian-based image instead of debootstrap.
        #[arg(long, value_name = "IMAGE")]
        from: Option<String>,
        /// The stack of a Debian suite: quarry-stack/SUITE (bookworm, trixie,
        /// forky), with the runtimes the buildpacks choose from it.
        #[arg(long, value_name = "SUITE", conflicts_with = "name")]
        suite: Option<String>,
    },
    /// List the stack images on the local Docker engine.
    List {
        /// One JSON array: name, id, size (bytes), created (Unix seconds).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hook { name } => match name.as_str() {
            "pre-receive" => ExitCode::from(quarry::hook::pre_receive() as u8),
            other => {
                eprintln!("quarry: unknown hook {other}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            data,
            ssh,
            http,
            https,
            publish,
            root_domain,
            nginx,
        } => {
            let root_domain = match quarry::validate::domain(&root_domain) {
                Ok(domain) => domain,
                Err(e) => {
                    eprintln!("quarry: --root-domain: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = quarry::logging::init() {
                eprintln!("quarry: {e}");
                return ExitCode::from(2);
            }
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            let config = quarry::serve::ServeConfig {
                data,
                ssh,
                http,
                https: https.0,
                publish,
                root_domain,
                nginx,
            };
            match runtime.block_on(quarry::serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("quarry: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Stack { command } => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(stack(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("quarry: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Install {
            root,
            check,
            ssh,
            http,
            https,
            root_domain,
        } => {
            if let Err(e) = quarry::validate::domain(&root_domain) {
                eprintln!("quarry: --root-domain: {e}");
                return ExitCode::from(2);
            }
            let options = quarry::install::Options {
                root,
                unit: quarry::install::Unit {
                    ssh,
                    http,
                    https,
                    root_domain,
                    ..Default::default()
                },
            };
            let mut out = std::io::stdout();
            let result = if check {
                match quarry::install::check(&options, &mut out) {
                    0 => Ok(()),
                    n => Err(quarry::install::InstallError::Problems(n)),
                }
            } else {
                quarry::install::install(&options, &mut out)
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("quarry: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Uninstall { purge, root } => {
            match quarry::install::uninstall(root.as_deref(), purge, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("quarry: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys { command } => match keys(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("quarry: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn stack(command: StackCommand) -> anyhow::Result<()> {
    use quarry::stackimage;
    let docker = quarry::serve::connect_docker().await?;
    match command {
        StackCommand::Build {
            name,
            force,
            from,
            suite,
        } => {
            let name = match suite {
                Some(suite) => match quarry::runtime::suite(&suite) {
                    Some(s) => stackimage::suite_stack(s.name),
                    None => {
                        anyhow::bail!(
                            "unknown suite {suite:?}; suites: {}",
                            quarry::runtime::SUITES
                                .iter()
                                .map(|s| s.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                },
                None => stackimage::full_name(&name),
            };
            let (p, mut rx) = quarry::progress::Progress::channel();
            let print = tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    println!("{line}");
                }
            });
            let result = stackimage::build(&docker, &name, force, from.as_deref(), &p).await;
            drop(p);
            let _ = print.await;
            result?;
            println!("{name} is ready");
            Ok(())
        }
        StackCommand::List { json } => {
            let images = stackimage::list(&docker).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else if images.is_empty() {
                println!(
                    "no stack images yet: `quarry stack build` makes {}",
                    stackimage::DEFAULT_STACK
                );
            } else {
                println!("{:<40} {:<12} {:>8}  CREATED", "NAME", "ID", "SIZE");
                for i in images {
                    let created = quarry::clock::unix_to_rfc3339(i.created).unwrap_or_default();
                    println!(
                        "{:<40} {:<12} {:>5} MB  {created}",
                        i.name,
                        i.id,
                        i.size / 1_000_000
                    );
                }
            }
            Ok(())
        }
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Add {
            name,
            data,
            role,
            apps,
            create,
        } => {
            quarry::validate::key_name(&name)?;
            for app in &apps {
                quarry::validate::app_name(app).context("--apps")?;
            }
            let mut text = String::new();
            std::io::stdin()
                .take(quarry::validate::MAX_KEY_LEN as u64 + 1)
                .read_to_string(&mut text)
                .context("cannot read the key from standard input")?;
            let (public_key, fingerprint) = parse_public_key(&text)?;
            let store = Store::open(&data).with_context(|| data.display().to_string())?;
            store.add_key(&KeyRecord {
                name: name.clone(),
                role,
                apps,
                create,
                public_key,
                fingerprint: fingerprint.clone(),
                added: now_rfc3339(),
            })?;
            println!("added key {name} ({role}) {fingerprint}");
            Ok(())
        }
        KeysCommand::List { data } => {
            let store = Store::open(&data).with_context(|| data.display().to_string())?;
            for k in store.keys()? {
                println!(
                    "{}\t{}\t{}\t{}",
                    k.name,
                    k.role,
                    k.apps.join(","),
                    k.fingerprint
                );
            }
            Ok(())
        }
        KeysCommand::Hq { data } => {
            let store = Store::open(&data).with_context(|| data.display().to_string())?;
            let key = quarry::remote::hq_key(store.root())?;
            print!("{}", quarry::remote::hq_public_line(&key));
            Ok(())
        }
        KeysCommand::Remove { name, data } => {
            let store = Store::open(&data).with_context(|| data.display().to_string())?;
            if store.remove_key(&name)? {
                println!("removed key {name}");
                Ok(())
            } else {
                anyhow::bail!("no key named {name}")
            }
        }
    }
}

/// `--https ADDR` or `--https off`.
#[derive(Clone, Debug)]
struct Https(Option<SocketAddr>);

fn parse_https(s: &str) -> Result<Https, String> {
    if s == "off" {
        return Ok(Https(None));
    }
    s.parse()
        .map(|a| Https(Some(a)))
        .map_err(|_| format!("expected ADDRESS:PORT or off, found {s:?}"))
}
