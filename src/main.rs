//! The `quarry` binary: parses flags and calls into the library.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Revoke a key.
    Remove {
        name: String,
        #[arg(long, default_value = "./.quarry", env = "QUARRY_DATA")]
        data: PathBuf,
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
            root_domain,
            nginx,
        } => {
            if let Err(e) = quarry::validate::domain(&root_domain) {
                eprintln!("quarry: --root-domain: {e}");
                return ExitCode::from(2);
            }
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
                        .unwrap_or_else(|_| "info,russh=warn,bollard=warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            let config = quarry::serve::ServeConfig {
                data,
                ssh,
                http,
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
        Command::Keys { command } => match keys(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("quarry: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Add {
            name,
            data,
            role,
            apps,
            create,
        } => {
            quarry::validate::key_name(&name).map_err(|e| e.to_string())?;
            for app in &apps {
                quarry::validate::app_name(app).map_err(|e| format!("--apps: {e}"))?;
            }
            let mut text = String::new();
            std::io::stdin()
                .take(quarry::validate::MAX_KEY_LEN as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
            let (public_key, fingerprint) = parse_public_key(&text)?;
            let store = Store::open(&data).map_err(|e| format!("{}: {e}", data.display()))?;
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
            let store = Store::open(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            for k in store.keys().map_err(|e| e.to_string())? {
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
        KeysCommand::Remove { name, data } => {
            let store = Store::open(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            if store.remove_key(&name).map_err(|e| e.to_string())? {
                println!("removed key {name}");
                Ok(())
            } else {
                Err(format!("no key named {name}"))
            }
        }
    }
}
