//! `releases`, `releases:info`, `rollback`, and `rerelease` (a new release of the same image, for config changes and restarts).
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct ReleaseView<'a> {
    number: u32,
    commit: &'a str,
    image: &'a str,
    created: &'a str,
    by: &'a str,
    fingerprint: &'a str,
    description: &'a str,
    status: &'a str,
    reason: Option<&'a str>,
    /// Names only: values are secrets and stay in `config`.
    env: Vec<&'a str>,
}

pub(super) fn release_view(r: &Release) -> ReleaseView<'_> {
    ReleaseView {
        number: r.number,
        commit: &r.commit,
        image: &r.image,
        created: &r.created,
        by: &r.by,
        fingerprint: &r.fingerprint,
        description: &r.description,
        status: r.status.as_str(),
        reason: r.reason.as_deref(),
        env: r.env.keys().map(String::as_str).collect(),
    }
}

pub(super) async fn releases(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let list = d.store.releases(app).map_err(io)?;
    let views: Vec<_> = list.iter().rev().map(release_view).collect();
    let header = [
        "RELEASE",
        "STATUS",
        "COMMIT",
        "CREATED",
        "BY",
        "DESCRIPTION",
    ];
    show(
        out,
        json,
        &views,
        Some(format!("{app} has no releases yet")),
        &header,
        |r| {
            vec![
                format!("v{}", r.number),
                r.status.to_string(),
                r.commit.chars().take(7).collect(),
                r.created.to_string(),
                r.by.to_string(),
                r.description.to_string(),
            ]
        },
    )
    .await;
    Ok(())
}

pub(super) async fn releases_info(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    number: u32,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let r = d
        .store
        .release(app, number)
        .map_err(io)?
        .ok_or_else(|| CommandError::NotFound(format!("{app} has no release v{number}")))?;
    let v = release_view(&r);
    if json {
        print_json(out, &v).await;
    } else {
        let mut text = format!(
            "release:     v{}\nstatus:      {}\ncommit:      {}\nimage:       {}\ncreated:     {}\nby:          {} ({})\ndescription: {}\nconfig vars: {}\n",
            v.number,
            v.status,
            v.commit,
            v.image,
            v.created,
            v.by,
            v.fingerprint,
            v.description,
            if v.env.is_empty() {
                "-".to_string()
            } else {
                v.env.join(", ")
            }
        );
        if let Some(reason) = v.reason {
            text.push_str(&format!("reason:      {reason}\n"));
        }
        out.out(text).await;
    }
    Ok(())
}

/// Make a new release from `base` with `env` and roll it out.
pub(super) async fn rerelease(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    base: &Release,
    env: BTreeMap<String, String>,
    description: String,
    p: &Progress,
) -> Result<u32, Fail> {
    let stack = stack::from_release(base).map_err(io)?;
    let number = d.store.next_release_number(app).map_err(io)?;
    let mut release = Release {
        number,
        commit: base.commit.clone(),
        image: base.image.clone(),
        env,
        global_env: d.store.global_env().map_err(io)?,
        manifest: base.manifest.clone(),
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description,
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store.write_release(app, &release).map_err(io)?;
    p.step(format!(
        "Releasing v{number} of {app}: {}",
        release.description
    ));
    let result = deploy::apply(d, app, &release, &stack, p).await;
    deploy::finish(d, app, &mut release, result, p).map_err(fail)?;
    p.step(format!("Released v{number}"));
    Ok(number)
}

pub(super) async fn rollback(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    target: Option<u32>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await
            .map_err(io)?;
        let all = d.store.releases(app).map_err(io)?;
        let live = all
            .iter()
            .rev()
            .find(|r| r.status == ReleaseStatus::Live)
            .cloned();
        let target = match target {
            Some(n) => all
                .iter()
                .find(|r| r.number == n)
                .cloned()
                .ok_or_else(|| fail(format!("{app} has no release v{n}")))?,
            None => {
                let below = live.as_ref().map_or(u32::MAX, |l| l.number);
                all.iter()
                    .rev()
                    .find(|r| {
                        r.number < below
                            && matches!(r.status, ReleaseStatus::Superseded | ReleaseStatus::Live)
                    })
                    .cloned()
                    .ok_or_else(|| fail(format!(
                        "{app} has no earlier successful release to roll back to"
                    )))?
            }
        };
        if target.status == ReleaseStatus::Failed {
            return Err(fail(format!(
                "v{} of {app} never served (it failed); pick a release that did",
                target.number
            )));
        }
        if d.docker.inspect_image(&target.image).await.is_err() {
            return Err(fail(format!(
                "the image of v{} ({}) was pruned (quarry.yml releases.keep); push commit {} again instead",
                target.number,
                target.image,
                &target.commit[..7.min(target.commit.len())]
            )));
        }
        rerelease(
            d,
            key,
            app,
            &target,
            target.env.clone(),
            format!("rollback to v{}", target.number),
            &p,
        )
        .await
    })
    .await;
    result.map(|_| ())
}
