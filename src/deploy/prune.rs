//! Old release images: all but the last `releases.keep` successful ones go,
//! on every server that answers, and the HQ's dangling build layers.
//! May touch: the fleet's engines (images only).

use super::*;

/// Remove the images of all but the last `keep` successful releases (never
/// the live one's) and this instance's dangling build layers. Returns how many
/// release images went. Failures only cost disk, so they are logged, not raised.
pub async fn prune_images(d: &Daemon, app: &str, keep: usize) -> usize {
    let Ok(releases) = d.store.releases(app) else {
        return 0;
    };
    let mut kept: BTreeSet<&str> = releases
        .iter()
        .rev()
        .filter(|r| matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Superseded))
        .take(keep.max(1))
        .map(|r| r.image.as_str())
        .collect();
    kept.extend(
        releases
            .iter()
            .filter(|r| r.status == ReleaseStatus::Live)
            .map(|r| r.image.as_str()),
    );
    let doomed: BTreeSet<&str> = releases
        .iter()
        .map(|r| r.image.as_str())
        .filter(|i| !kept.contains(i))
        .collect();
    let mut removed = 0;
    // Every server that answers: images were copied or built there too.
    let engines: Vec<(String, bollard::Docker)> = d
        .fleet
        .answering()
        .into_iter()
        .map(|(s, docker)| (s.name, docker))
        .collect();
    for image in doomed {
        crate::buildpack::drop_context(d, app, image);
        for (server, docker) in &engines {
            match docker
                .remove_image(
                    image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
            {
                Ok(_) if server == crate::fleet::LOCAL => removed += 1,
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => tracing::warn!(
                    app,
                    image,
                    server,
                    "cannot prune: {}",
                    launch::docker_message(&e)
                ),
            }
        }
    }
    // Dependency images no kept release is built on go after them.
    crate::buildpack::prune_deps(d, app, &engines).await;
    // A build in flight has an untagged final image; the next push prunes.
    let Some(_idle) = d.builds.idle() else {
        return removed;
    };
    let filters = HashMap::from([
        ("dangling".to_string(), vec!["true".to_string()]),
        (
            "label".to_string(),
            vec![format!("{}={}", launch::LABEL_INSTANCE, d.instance)],
        ),
    ]);
    let options = bollard::query_parameters::PruneImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    if let Err(e) = d.docker.prune_images(Some(options)).await {
        tracing::warn!(
            app,
            "cannot prune build layers: {}",
            launch::docker_message(&e)
        );
    }
    removed
}
