//! `keys`, `keys:add`, `keys:remove`: who may do what.
//! May touch: what the handlers in `commands` may (the db, the engines through
//! launch/deploy).

use super::*;

#[derive(Serialize)]
pub(super) struct KeyView<'a> {
    name: &'a str,
    role: String,
    apps: &'a [String],
    create: bool,
    fingerprint: &'a str,
    added: &'a str,
}

pub(super) async fn keys(d: &Daemon, key: &KeyRecord, json: bool, out: &Output) -> Res {
    require_admin(key, "listing keys")?;
    let all = d.store.keys().map_err(io)?;
    let views: Vec<KeyView> = all
        .iter()
        .map(|k| KeyView {
            name: &k.name,
            role: k.role.to_string(),
            apps: &k.apps,
            create: k.create,
            fingerprint: &k.fingerprint,
            added: &k.added,
        })
        .collect();
    show(
        out,
        json,
        &views,
        None,
        &["NAME", "ROLE", "APPS", "FINGERPRINT"],
        |k| {
            let apps = if k.role == "admin" {
                "*".into()
            } else {
                k.apps.join(",")
            };
            vec![
                k.name.to_string(),
                k.role.clone(),
                apps,
                k.fingerprint.to_string(),
            ]
        },
    )
    .await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn keys_add(
    d: &Daemon,
    key: &KeyRecord,
    name: String,
    role: Role,
    apps: Vec<AppName>,
    create: bool,
    mut input: Input,
    out: &Output,
) -> Res {
    require_admin(key, "adding keys")?;
    let text = read_input(&mut input, crate::validate::MAX_KEY_LEN)
        .await
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let text = String::from_utf8(text)
        .map_err(|_| CommandError::Usage("the public key is not UTF-8".into()))?;
    let (public_key, fingerprint) =
        store::parse_public_key(&text).map_err(|e| CommandError::Usage(e.to_string()))?;
    let record = KeyRecord {
        name: name.clone(),
        role,
        apps: apps.into_iter().map(String::from).collect(),
        create,
        public_key,
        fingerprint: fingerprint.clone(),
        added: store::now_rfc3339(),
    };
    d.store
        .add_key(&record)
        .map_err(|e| CommandError::Conflict(e.to_string()))?;
    out.out(format!("added key {name} ({role}) {fingerprint}\n"))
        .await;
    Ok(())
}

pub(super) async fn keys_remove(d: &Daemon, key: &KeyRecord, name: &str, out: &Output) -> Res {
    require_admin(key, "removing keys")?;
    let removed = d.store.remove_key(name).map_err(|e| match e {
        store::KeyError::LastAdmin(_) => CommandError::Conflict(e.to_string()),
        store::KeyError::Empty
        | store::KeyError::TooLong
        | store::KeyError::Lines
        | store::KeyError::NotOpenSsh(_)
        | store::KeyError::Algorithm(_)
        | store::KeyError::Name(_)
        | store::KeyError::NameTaken(_)
        | store::KeyError::Registered(_)
        | store::KeyError::Io { .. } => fail(e),
    })?;
    if !removed {
        return Err(CommandError::NotFound(format!("no key named {name}")));
    }
    out.out(format!("removed key {name}\n")).await;
    // Its open connections too, not only new ones.
    let closed = d.sessions.close_removed(&d.store).await;
    if closed > 0 {
        tracing::info!(
            key = name,
            connections = closed,
            "closed the connections of a removed key"
        );
    }
    Ok(())
}
