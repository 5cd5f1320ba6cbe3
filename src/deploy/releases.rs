//! New releases that are not pushes: a release of the same image with other
//! config (config changes, restarts) and a rollback to an earlier release.
//! Both write a `deploying` record, roll it out through [`super::apply`] and
//! record the outcome with [`super::finish`].
//! May touch: the release records (through the store), the engines through
//! `apply`, the app's lock (rollback takes it).

use std::collections::BTreeMap;

use crate::daemon::Daemon;
use crate::progress::Progress;
use crate::stack;
use crate::store::{self, KeyRecord, Release, ReleaseStatus};

use super::{DeployError, LOCK_WAIT};

/// Make a new release from `base` with `env`, by `key`, and roll it out.
/// The caller holds the app's lock. Returns the new release number.
pub async fn rerelease(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    base: &Release,
    env: BTreeMap<String, String>,
    description: String,
    p: &Progress,
) -> Result<u32, DeployError> {
    let stack = stack::from_release(base)?;
    let number = d.store.next_release_number(app)?;
    let mut release = Release {
        number,
        commit: base.commit.clone(),
        image: base.image.clone(),
        env,
        global_env: d.store.global_env()?,
        manifest: base.manifest.clone(),
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description,
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store.write_release(app, &release)?;
    p.step(format!(
        "Releasing v{number} of {app}: {}",
        release.description
    ));
    let result = super::apply(d, app, &release, &stack, p).await;
    super::finish(d, app, &mut release, result, p)?;
    p.step(format!("Released v{number}"));
    Ok(number)
}

/// Why a rollback cannot go to the release asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    #[error("{app} has no release v{number}")]
    NoSuchRelease { app: String, number: u32 },
    #[error("{app} has no earlier successful release to roll back to")]
    NothingEarlier { app: String },
    #[error("v{number} of {app} never served (it failed); pick a release that did")]
    NeverServed { app: String, number: u32 },
    #[error(
        "the image of v{number} ({image}) was pruned (quarry.yml releases.keep); push commit {commit} again instead"
    )]
    Pruned {
        number: u32,
        image: String,
        commit: String,
    },
}

/// The release a rollback goes to: `target`, or the newest one below the
/// live release that served. Pure: reads only `all`.
pub fn rollback_target(
    app: &str,
    all: &[Release],
    target: Option<u32>,
) -> Result<Release, RollbackError> {
    let live = all.iter().rev().find(|r| r.status == ReleaseStatus::Live);
    let found =
        match target {
            Some(number) => all.iter().find(|r| r.number == number).ok_or_else(|| {
                RollbackError::NoSuchRelease {
                    app: app.to_string(),
                    number,
                }
            })?,
            None => {
                let below = live.map_or(u32::MAX, |l| l.number);
                all.iter()
                    .rev()
                    .find(|r| {
                        r.number < below
                            && matches!(r.status, ReleaseStatus::Superseded | ReleaseStatus::Live)
                    })
                    .ok_or_else(|| RollbackError::NothingEarlier {
                        app: app.to_string(),
                    })?
            }
        };
    match found.status {
        ReleaseStatus::Failed => Err(RollbackError::NeverServed {
            app: app.to_string(),
            number: found.number,
        }),
        ReleaseStatus::Deploying | ReleaseStatus::Live | ReleaseStatus::Superseded => {
            Ok(found.clone())
        }
    }
}

/// Roll `app` back to `target` (or the release before the live one): a new
/// release of that release's image and config. Takes the app's lock.
pub async fn rollback(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    target: Option<u32>,
    p: &Progress,
) -> Result<u32, DeployError> {
    let _lock = d.locks.acquire(&d.store, app, p, LOCK_WAIT).await?;
    let all = d.store.releases(app)?;
    let target = rollback_target(app, &all, target)?;
    if d.docker.inspect_image(&target.image).await.is_err() {
        return Err(RollbackError::Pruned {
            number: target.number,
            image: target.image.clone(),
            commit: target.commit.chars().take(7).collect(),
        }
        .into());
    }
    rerelease(
        d,
        key,
        app,
        &target,
        target.env.clone(),
        format!("rollback to v{}", target.number),
        p,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus::*;

    fn releases(list: &[ReleaseStatus]) -> Vec<Release> {
        list.iter()
            .enumerate()
            .map(|(i, &status)| Release {
                number: i as u32 + 1,
                commit: "abcdef0123".into(),
                image: format!("quarry/shop:v{}", i + 1),
                env: BTreeMap::new(),
                global_env: BTreeMap::new(),
                manifest: None,
                created: String::new(),
                by: "alice".into(),
                fingerprint: String::new(),
                description: String::new(),
                status,
                reason: None,
            })
            .collect()
    }

    #[test]
    fn the_default_target_is_the_newest_that_served_below_the_live_one() {
        let all = releases(&[Superseded, Failed, Superseded, Failed, Live, Failed]);
        assert_eq!(rollback_target("shop", &all, None).unwrap().number, 3);
        let all = releases(&[Failed, Live]);
        assert_eq!(
            rollback_target("shop", &all, None).unwrap_err().to_string(),
            "shop has no earlier successful release to roll back to"
        );
    }

    #[test]
    fn an_asked_for_release_must_exist_and_have_served() {
        let all = releases(&[Superseded, Failed, Live]);
        assert_eq!(rollback_target("shop", &all, Some(1)).unwrap().number, 1);
        assert_eq!(
            rollback_target("shop", &all, Some(2)).unwrap_err(),
            RollbackError::NeverServed {
                app: "shop".into(),
                number: 2
            }
        );
        assert_eq!(
            rollback_target("shop", &all, Some(9))
                .unwrap_err()
                .to_string(),
            "shop has no release v9"
        );
    }
}
