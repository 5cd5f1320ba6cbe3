//! Quarry: a self-hosted git-push PaaS.
//!
//! # Layout
//!
//! In pipeline order, each layer using only the ones below it (no import
//! circles between these modules; see ARCHITECTURE.md):
//!
//! The edge, where requests come in:
//! - [`serve`]: start-up, listeners, signals; [`daemon`]: the shared state;
//!   [`install`]: `quarry install` as a systemd service.
//! - [`ssh`]: the SSH endpoint (russh): key auth, limits, git bridging.
//! - [`hook`]: pre-receive hook ⇄ daemon bridge (Unix socket).
//! - [`command`]: exec lines → the closed [`command::Cmd`] enum; help (pure).
//! - [`commands`]: one file per topic, executing control commands.
//! - [`channel`]: one SSH channel as commands see it (stdin, stdout, TTY).
//! - [`sessions`]: live connections by key, closed when their key goes.
//!
//! The pipeline, push to route:
//! - [`receive`]: bare repos, hooks, `git archive` of the pushed commit.
//! - [`stack`], [`manifest`]: which manifest a tree has; quarry.yml and
//!   Procfile → a validated manifest (pure).
//! - [`appjson`]: app.json → config vars, formation and postdeploy on the
//!   first deploy.
//! - [`build`], [`buildpack`], [`stackimage`]: Dockerfile or buildpack →
//!   image, on the Debian stack image.
//! - [`runtime`]: which Python / Node (so which Debian suite) a build asks
//!   for (pure table).
//! - [`deploy`]: the pipeline itself: state (desired/current), the plan's
//!   execution, rollouts, and the operations that are not pushes
//!   (rerelease, rollback, destroy, drain), pruning, growing and shrinking
//!   the fleet.
//! - [`plan`]: desired vs current → instructions (pure).
//! - [`launch`]: containers (start, health, inventory, volumes).
//! - [`fleet`], [`network`], [`cloud`]: the servers, the apps' networks,
//!   the providers; [`remote`], [`provision`], [`hosts`]: servers over SSH,
//!   their provisioner scripts, the fleet's hosts block.
//! - [`route`], [`domains`], [`tls`], [`alpn`]: nginx, one owner per
//!   domain, certificates, the TLS-ALPN-01 responder.
//! - [`lockdown`]: the nftables table that closes each server to all but
//!   the fleet.
//! - [`logging`]: the daemon's log, to journald with its fields under
//!   systemd, else stderr.
//!
//! Always running: [`reconcile`] (the engines match the db), [`cron`]
//! (scheduled jobs), [`oneoff`] (`run`, `enter`, the jobs' containers).
//!
//! The ground floor (no Docker, no daemon): [`store`] (the filesystem db),
//! [`config`] (config.yml), [`endpoint`] (how an engine is reached),
//! [`grid`] (placement, pure), [`schedule`] (cron text → due times),
//! [`validate`] (names that cross the edge), [`yaml`] (the one YAML reader:
//! a tree with lines, errors with key paths), [`confined`] (no-follow access
//! to what tenants wrote), [`progress`] (lines to the pusher), [`clock`]
//! (timestamps), [`probe`] (the HTTP/1.0 requests the daemon sends, through
//! hyper).

pub mod alpn;
pub mod appjson;
pub mod build;
pub mod buildpack;
pub mod channel;
pub mod clock;
pub mod cloud;
pub mod command;
pub mod commands;
pub mod config;
pub mod confined;
pub mod cron;
pub mod daemon;
pub mod deploy;
pub mod domains;
pub mod endpoint;
pub mod fleet;
pub mod grid;
pub mod hook;
pub mod hosts;
pub mod install;
pub mod launch;
pub mod lockdown;
pub mod logging;
pub mod manifest;
pub mod network;
pub mod oneoff;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod provision;
pub mod receive;
pub mod reconcile;
pub mod remote;
pub mod route;
pub mod runtime;
pub mod schedule;
pub mod serve;
pub mod sessions;
pub mod ssh;
pub mod stack;
pub mod stackimage;
pub mod store;
pub mod tls;
pub mod validate;
pub mod yaml;
