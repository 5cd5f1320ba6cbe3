//! Golden tests of the main config, the vhosts and the generation file.

use super::*;

#[test]
fn app_vhost_golden() {
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let text = render_app(
        "shop",
        listen,
        &[NodeRoute {
            node: "web".into(),
            domains: vec!["shop.localhost".into(), "www.example.com".into()],
            upstreams: vec![
                "127.0.0.1:49153".parse().unwrap(),
                "127.0.0.2:49160".parse().unwrap(),
            ],
        }],
    );
    let want = "\
# Routes of app shop, written by quarry; edits are overwritten.
upstream quarry.shop.web {
    server 127.0.0.1:49153 max_fails=1 fail_timeout=2s;
    server 127.0.0.2:49160 max_fails=1 fail_timeout=2s;
    keepalive 16;
}
server {
    listen 127.0.0.1:8080;
    server_name shop.localhost www.example.com;
    location / {
        proxy_pass http://quarry.shop.web;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $quarry_connection;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-Id $request_id;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_connect_timeout 5s;
    }
}
";
    assert_eq!(text, want);
}

#[test]
fn main_config_includes_the_mode_files_and_a_generation_server_of_its_own() {
    let text = render_main(Path::new("/d/nginx"), "127.0.0.1:8080".parse().unwrap());
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{text}"))
    };
    assert!(at("include /d/nginx/modules.conf;") < at("events {"));
    assert!(at("listen 127.0.0.1:8080 default_server;") < at("include /d/nginx/default.conf;"));
    // Only Host quarry.invalid sees the generation: apps keep their paths.
    assert!(at("server_name quarry.invalid;") < at("include /d/nginx/generation.conf;"));
    assert!(at("include /d/nginx/dynamic.conf;") < at("include /d/nginx/sites/*.conf;"));
}

#[test]
fn upstream_names_of_different_apps_never_meet() {
    // App shop-db's node main and app shop's node db-main.
    assert_eq!(upstream_name("shop-db", "main"), "quarry.shop-db.main");
    assert_eq!(upstream_name("shop", "db-main"), "quarry.shop.db-main");
}

#[test]
fn node_without_containers_answers_503() {
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let text = render_app(
        "shop",
        listen,
        &[NodeRoute {
            node: "web".into(),
            domains: vec!["shop.localhost".into()],
            upstreams: vec![],
        }],
    );
    assert!(!text.contains("upstream"));
    assert!(text.contains("return 503 \"quarry: shop has no running web containers\\n\";"));
}
