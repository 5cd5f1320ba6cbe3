//! `config`, `config:get`, `config:set`, `config:unset`: the app's config vars.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

pub(super) async fn config(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let env = d.store.app_env(app).map_err(io)?;
    if json {
        print_json(out, &env).await;
    } else if env.is_empty() {
        out.out(format!("{app} has no config vars\n")).await;
    } else {
        let width = env.keys().map(String::len).max().unwrap_or(0);
        let mut text = String::new();
        for (k, v) in &env {
            text.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out.out(text).await;
    }
    Ok(())
}

pub(super) async fn config_get(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    var: &str,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let env = d.store.app_env(app).map_err(io)?;
    match env.get(var) {
        Some(v) => {
            out.out(format!("{v}\n")).await;
            Ok(())
        }
        None => Err(CommandError::NotFound(format!(
            "{app} has no config var {var}"
        ))),
    }
}

pub(super) async fn config_change(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    set: BTreeMap<EnvKey, String>,
    unset: Vec<EnvKey>,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let result = with_progress(out, |p| async move {
        let _lock = d
            .locks
            .acquire(&d.store, app, &p, std::time::Duration::from_secs(600))
            .await
            .map_err(io)?;
        let before = d.store.app_env(app).map_err(io)?;
        for (k, v) in &set {
            d.store.set_app_env(app, k, v).map_err(io)?;
        }
        for k in &unset {
            d.store.unset_app_env(app, k).map_err(io)?;
        }
        let names: Vec<&str> = set
            .keys()
            .map(EnvKey::as_str)
            .chain(unset.iter().map(EnvKey::as_str))
            .collect();
        let what = if set.is_empty() {
            "config unset"
        } else {
            "config set"
        };
        let description = format!("{what} {}", names.join(" "));
        let Some(live) = d.store.live_release(app).map_err(io)? else {
            p.step("Config saved; it applies from the first push");
            return Ok(0);
        };
        let env = d.store.app_env(app).map_err(io)?;
        match deploy::rerelease(d, key, app, &live, env, description, &p).await {
            Ok(n) => Ok(n),
            Err(e) => {
                // The vars are part of what failed: put them back as they were.
                for k in set.keys().chain(unset.iter()) {
                    let _ = match before.get(k.as_str()) {
                        Some(v) => d.store.set_app_env(app, k, v),
                        None => d.store.unset_app_env(app, k).map(|_| ()),
                    };
                }
                Err(fail(e))
            }
        }
    })
    .await;
    result.map(|_| ())
}
