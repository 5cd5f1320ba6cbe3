//! Quarry: a self-hosted git-push PaaS.
//!
//! # Layout
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//!
//! - [`ssh`]: the SSH endpoint (russh): key auth, exec parsing, git bridging.
//! - [`command`]: exec lines → the closed [`command::Cmd`] enum; help texts.
//! - [`commands`]: executes control commands.
//! - [`hook`]: pre-receive hook ⇄ daemon bridge (Unix socket).
//! - [`receive`]: bare repos, hooks, `git archive` of the pushed commit.
//! - [`manifest`]: quarry.yml and Procfile → a validated manifest (pure).
//! - [`stack`]: which manifest a pushed tree or a release has.
//! - [`plan`]: desired vs current state → launch instructions (pure).
//! - [`build`]: Dockerfile → image, through the Docker API.
//! - [`buildpack`]: no Dockerfile → Heroku-classic buildpack build → image.
//! - [`stackimage`]: the Debian stack image buildpack builds run on.
//! - [`deploy`]: the pipeline itself, and rollouts of a release.
//! - [`launch`]: the only code that starts and stops containers.
//! - [`fleet`]: the servers (Docker engines) and moving images between them.
//! - [`route`]: nginx config rendering and the supervised nginx.
//! - [`network`]: one network per app and server, with its own subnet.
//! - [`domains`]: one owner per domain across the instance.
//! - [`reconcile`]: makes the engine match the db.
//! - [`remote`]: servers over SSH: the HQ's key, sessions, the Docker bridge.
//! - [`provision`]: provisioner scripts and their runs on SSH servers.
//! - [`hosts`]: the fleet's name → address block in the servers' hosts files.
//! - [`cloud`]: config.yml, providers: answers the grid's create/destroy events.
//! - [`grid`]: placement of slices (containers) onto blocks (servers) (pure).
//! - [`store`]: the filesystem db, atomic writes.
//! - [`confined`]: no-follow, size-capped access to folders a tenant controls.
//! - [`tls`]: certificates (ACME, user-given), their renewal.
//! - [`daemon`], [`serve`]: shared state and process lifecycle.
//! - [`oneoff`]: `run`, `enter` and the containers of scheduled jobs.
//! - [`cron`]: the scheduler of quarry.yml `cron:` jobs.
//! - [`schedule`]: cron schedule text → due times (pure).
//! - [`validate`]: every name that crosses the edge.

pub mod build;
pub mod buildpack;
pub mod cloud;
pub mod command;
pub mod commands;
pub mod confined;
pub mod cron;
pub mod daemon;
pub mod deploy;
pub mod domains;
pub mod fleet;
pub mod grid;
pub mod hook;
pub mod hosts;
pub mod launch;
pub mod manifest;
pub mod network;
pub mod oneoff;
pub mod plan;
pub mod progress;
pub mod provision;
pub mod receive;
pub mod reconcile;
pub mod remote;
pub mod route;
pub mod schedule;
pub mod serve;
pub mod ssh;
pub mod stack;
pub mod stackimage;
pub mod store;
pub mod tls;
pub mod validate;
