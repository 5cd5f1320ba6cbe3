//! Where each service of an app lives (`stacks/<app>/services.json`), and
//! what to do with a service whose server is not running.
//!
//! A service with volumes keeps its data on its server, so a short outage
//! of that server must not re-create it on empty volumes elsewhere: it
//! waits (degraded) until the server answers again, or until the operator
//! moves it (`servers:drain` on a server that answers, `servers:remove` on
//! one that does not). Stateless services and nodes are re-placed at once.
//! The record is what remembers the server while it does not answer, since
//! Docker can only be asked about engines that answer.
//! May touch: `stacks/<app>/services.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::fleet::ServerState;
use crate::store::{self, Store};

/// A service's server, and its port as published on that server's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Home {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<SocketAddr>,
}

/// Where a service's container may be (re-)created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the grid says: a new service, or one that may move.
    Anywhere,
    /// On its own server again (its volumes are there).
    Home,
    /// Nowhere for now: its server does not answer and holds its data.
    Wait,
}

/// The rule. `home` is the state of the server the service was last on
/// (`None` when it has no record, `Some(None)` when that server has left
/// the fleet).
pub fn placement(has_volumes: bool, home: Option<Option<ServerState>>) -> Placement {
    let Some(state) = home else {
        return Placement::Anywhere;
    };
    match state {
        Some(ServerState::Running) => Placement::Home,
        // A short outage: data stays where it is, and so does the service.
        Some(ServerState::Unknown) if has_volumes => Placement::Wait,
        Some(ServerState::Unknown) => Placement::Anywhere,
        // The operator's decisions: draining moves it, removal forgets the server.
        Some(ServerState::Draining) | Some(ServerState::Terminating) | None => Placement::Anywhere,
    }
}

fn path(store: &Store, app: &str) -> std::path::PathBuf {
    store.app_dir(app).join("services.json")
}

pub fn read(store: &Store, app: &str) -> BTreeMap<String, Home> {
    match store::read_json(&path(store, app)) {
        Ok(Some(homes)) => homes,
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(app, "cannot read services.json: {e}");
            BTreeMap::new()
        }
    }
}

/// Record `service` at `home` (written only when it changed).
pub fn record(store: &Store, app: &str, service: &str, home: Home) {
    let mut homes = read(store, app);
    if homes.get(service) == Some(&home) {
        return;
    }
    homes.insert(service.to_string(), home);
    if let Err(e) = store::write_json(&path(store, app), &homes, 0o644) {
        tracing::warn!(app, service, "cannot write services.json: {e}");
    }
}

/// The services of `services` (name → has volumes) that wait for their
/// server, with that server.
pub fn waiting(
    store: &Store,
    fleet: &crate::fleet::Fleet,
    app: &str,
    services: &BTreeMap<String, bool>,
) -> Vec<(String, String)> {
    let homes = read(store, app);
    services
        .iter()
        .filter_map(|(name, &volumes)| {
            let home = homes.get(name)?;
            let state = fleet.get(&home.server).map(|(s, _)| s.state);
            (placement(volumes, Some(state)) == Placement::Wait)
                .then(|| (name.clone(), home.server.clone()))
        })
        .collect()
}

/// The line `ps`, `events` and the pusher see for a waiting service.
pub fn degraded_line(service: &str, server: &str) -> String {
    format!(
        "service {service} is degraded: server {server} does not answer and holds its volumes, so it waits there (servers:remove {server} moves it elsewhere, without its data)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServerState::*;

    #[test]
    fn a_service_with_volumes_waits_out_an_outage_of_its_server() {
        assert_eq!(placement(true, Some(Some(Unknown))), Placement::Wait);
    }

    #[test]
    fn a_stateless_service_moves_on_an_outage() {
        assert_eq!(placement(false, Some(Some(Unknown))), Placement::Anywhere);
    }

    #[test]
    fn the_operator_moves_a_service_by_draining_or_removing_its_server() {
        for volumes in [true, false] {
            assert_eq!(
                placement(volumes, Some(Some(Draining))),
                Placement::Anywhere
            );
            assert_eq!(
                placement(volumes, Some(Some(Terminating))),
                Placement::Anywhere
            );
            assert_eq!(placement(volumes, Some(None)), Placement::Anywhere);
        }
    }

    #[test]
    fn a_service_goes_back_to_its_running_server_and_a_new_one_anywhere() {
        for volumes in [true, false] {
            assert_eq!(placement(volumes, Some(Some(Running))), Placement::Home);
            assert_eq!(placement(volumes, None), Placement::Anywhere);
        }
    }

    #[test]
    fn the_degraded_line_names_the_service_the_server_and_the_way_out() {
        assert_eq!(
            degraded_line("db", "s2"),
            "service db is degraded: server s2 does not answer and holds its volumes, so it waits there (servers:remove s2 moves it elsewhere, without its data)"
        );
    }
}
