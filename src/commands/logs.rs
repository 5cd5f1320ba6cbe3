//! `logs`: the containers' output merged by time, followed across redeploys.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn logs(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    lines: usize,
    follow: bool,
    node: Option<String>,
    out: &Output,
    mut closed: Closed,
) -> Res {
    require_app(d, key, app)?;
    let mut containers = d.containers(Some(app)).await.map_err(fail)?;
    if let Some(n) = &node {
        containers.retain(|c| &c.node == n);
    }
    // Merge by the engine's timestamps, prefix each line with node.n.
    let mut merged: Vec<(String, String)> = Vec::new();
    for c in &containers {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&lines.to_string())
            .build();
        let docker = d.docker_on(&c.server);
        let mut stream = docker.logs(&c.id, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
            for line in text.lines() {
                let (ts, rest) = line.split_once(' ').unwrap_or(("", line));
                merged.push((ts.to_string(), format!("{}.{} {rest}\n", c.node, c.index)));
            }
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(lines);
    for (_, line) in merged.into_iter().skip(skip) {
        out.out(line).await;
    }
    if !follow {
        return Ok(());
    }
    // Follow live until the client goes away. Containers come and go with
    // redeploys, scaling and restarts: look for new ones every second.
    // Bounded: a client that reads slowly slows the followers, which stop
    // reading the engine's stream (the engine keeps the log), instead of
    // lines piling up here.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(FOLLOW_QUEUE);
    let mut followed: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // The first pass shows only what comes after the lines printed above.
    let mut since = crate::clock::now_unix() as i32;
    let mut scan = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            line = rx.recv() => if let Some(l) = line { out.out(l).await },
            _ = closed.wait() => break,
            _ = scan.tick() => {
                followed.retain(|_, task| !task.is_finished());
                let Ok(mut now) = d.containers(Some(app)).await else { continue };
                if let Some(n) = &node {
                    now.retain(|c| &c.node == n);
                }
                for c in now.into_iter().filter(|c| c.state == crate::launch::ContainerState::Running) {
                    if followed.contains_key(&c.id) {
                        continue;
                    }
                    let task = tokio::spawn(follow_container(d.docker_on(&c.server), c.clone(), since, tx.clone()));
                    followed.insert(c.id, task);
                }
                // Later passes: containers new since the last pass show from their start
                // (minus a second, so no line falls between two passes).
                since = crate::clock::now_unix() as i32 - 1;
            }
        }
    }
    for task in followed.values() {
        task.abort();
    }
    Ok(())
}

/// Lines of `logs -f` between the followers and the client.
pub(super) const FOLLOW_QUEUE: usize = 256;

/// Send a container's log lines from `since` (unix seconds) until it stops.
pub(super) async fn follow_container(
    docker: bollard::Docker,
    c: launch::Found,
    since: i32,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(true)
        .since(since)
        .build();
    let mut stream = docker.logs(&c.id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        for line in text.lines() {
            if tx
                .send(format!("{}.{} {line}\n", c.node, c.index))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
