//! Moving an image between two engines with no registry: `docker save` on
//! the one that has it streamed into `docker load` on the other, through
//! the two APIs. May touch: the two engines.

use bollard::Docker;
use futures_util::StreamExt;

use super::FleetError;
use crate::launch::docker_message;

/// Make sure `image` is on `target`: if not, stream it from `source` (docker
/// save → docker load through the two APIs). Returns whether it was copied.
pub async fn ensure_image(
    source: &Docker,
    target: &Docker,
    image: &str,
) -> Result<bool, FleetError> {
    if target.inspect_image(image).await.is_ok() {
        return Ok(false);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let exporter = {
        let source = source.clone();
        let image = image.to_string();
        tokio::spawn(async move {
            let mut stream = source.export_image(&image);
            while let Some(chunk) = stream.next().await {
                let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        })
    };
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
        .quiet(true)
        .build();
    let mut load = target.import_image_stream(options, body, None);
    while let Some(r) = load.next().await {
        if let Err(e) = r {
            exporter.abort();
            return Err(FleetError::ImageCopy {
                image: image.to_string(),
                reason: docker_message(&e),
            });
        }
    }
    let _ = exporter.await;
    if target.inspect_image(image).await.is_err() {
        return Err(FleetError::ImageMissing {
            image: image.to_string(),
        });
    }
    Ok(true)
}
