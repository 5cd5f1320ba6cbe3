//! `releases`, `releases:info` and `rollback` (the rollback itself is
//! [`deploy::rollback`]).
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

pub(super) async fn rollback(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    target: Option<u32>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    with_progress(out, |p| async move {
        deploy::rollback(d, key, app, target, &p).await
    })
    .await
    .map(|_| ())
    .map_err(fail)
}
