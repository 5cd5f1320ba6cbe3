//! Golden relinks: which running node containers the plan replaces because
//! a service's address changes, and which it leaves alone.

use super::*;

/// The fleet of `desired(2)` grown to `servers`, the cache kept where `live_v2` has it.
fn on_servers(servers: &[&str]) -> Desired {
    let mut want = desired(2);
    want.servers = servers.iter().map(|s| s.to_string()).collect();
    want
}

#[test]
fn containers_that_know_the_right_address_stay() {
    // The cache runs on b and publishes its port; the local containers
    // were booted knowing that address, a container on b knows its name.
    let cache = at("b", Some("10.0.0.2:32768"));
    let mut current = live_v2();
    current.services.get_mut("cache").unwrap().at = cache.clone();
    for node in current.nodes.values_mut() {
        for l in node.linked.values_mut() {
            *l = linked(LOCAL, &cache);
        }
    }
    let worker = current.nodes.get_mut("worker").unwrap();
    worker
        .linked
        .insert(format!("{APP}.worker.1"), linked("b", &cache));
    assert_eq!(
        dry_run(&on_servers(&[LOCAL, "b"]), &current),
        "nothing to do\n"
    );
}

#[test]
fn a_service_moved_off_a_draining_server_relinks_every_kept_container() {
    // Its server drains: it is not current any more and the grid picks
    // its next server among several, so no address can be foreseen.
    let mut current = live_v2();
    current.services.clear();
    assert_eq!(
        dry_run(&on_servers(&[LOCAL, "b", "c"]), &current),
        "ENSURE cache (redis:7)\n\
             RELINK web x2 (cache is placed anew)\n\
             RELINK worker x1 (cache is placed anew)\n"
    );
    // With one server there is one place to go: same name, same links.
    assert_eq!(
        dry_run(&on_servers(&[LOCAL]), &current),
        "ENSURE cache (redis:7)\n"
    );
}

#[test]
fn a_service_replaced_in_place_relinks_only_the_containers_on_other_servers() {
    let cache = at("b", Some("10.0.0.2:32768"));
    let mut current = live_v2();
    let service = current.services.get_mut("cache").unwrap();
    service.at = cache.clone();
    service.spec_hash = "bbbbbbbbbbbb".into();
    let web = current.nodes.get_mut("web").unwrap();
    for l in web.linked.values_mut() {
        *l = linked(LOCAL, &cache);
    }
    // The worker runs beside the cache: it knows it by name, which stays.
    let worker = current.nodes.get_mut("worker").unwrap();
    worker
        .linked
        .insert(format!("{APP}.worker.1"), linked("b", &cache));
    assert_eq!(
        dry_run(&on_servers(&[LOCAL, "b"]), &current),
        "KILL myapp.cache\n\
             ENSURE cache (redis:7)\n\
             RELINK web x2 (cache restarts on server b)\n"
    );
}

#[test]
fn a_service_waiting_for_its_server_keeps_its_address() {
    let cache = at("b", Some("10.0.0.2:32768"));
    let mut want = on_servers(&[LOCAL]);
    want.services.get_mut("cache").unwrap().waiting = Some(cache.clone());
    let mut current = live_v2();
    current.services.clear();
    for node in current.nodes.values_mut() {
        for l in node.linked.values_mut() {
            *l = linked(LOCAL, &cache);
        }
    }
    assert_eq!(dry_run(&want, &current), "ENSURE cache (redis:7)\n");
}

#[test]
fn relinks_skip_redeployed_nodes_and_containers_scaled_away() {
    let mut want = on_servers(&[LOCAL, "b"]);
    want.restart = Some("worker".into());
    want.nodes.get_mut("web").unwrap().scale = 1;
    let mut moved = live_v2();
    moved.services.get_mut("cache").unwrap().at = at("b", Some("10.0.0.2:32768"));
    assert_eq!(
        dry_run(&want, &moved),
        "SCALE web 2 -> 1\n\
             DEPLOY worker v2 x1\n\
             RELINK web x1 (service addresses changed)\n"
    );
    assert!(matches!(
        &plan(&want, &moved)[2],
        Instruction::Relink { containers, .. } if containers == &[format!("{APP}.web.1")]
    ));
}

#[test]
fn the_links_digest_is_what_containers_were_labelled_with() {
    // Pinned: a change relinks every running container after an upgrade.
    let cache = at(LOCAL, None);
    assert_eq!(
        links_digest(APP, [("cache", Some(6379), Some(&cache))], LOCAL),
        short_digest("CACHE_HOST=cache.myapp\nCACHE_PORT=6379\n")
    );
    let far = at("b", Some("10.0.0.2:32768"));
    assert_eq!(
        links_digest(APP, [("my-cache", None, Some(&far))], LOCAL),
        short_digest("MY_CACHE_HOST=10.0.0.2\nMY_CACHE_PORT=32768\n")
    );
    assert_eq!(
        links_digest(APP, [("cache", None, None)], LOCAL),
        short_digest("CACHE_HOST=cache.myapp\nCACHE_PORT=\n")
    );
}
