//! The `certs*` commands: show, enable, disable, add, remove and renew an
//! app's certificate. A child of `commands` (its helpers and exit codes);
//! the work is done by [`crate::tls`], which owns the files and nginx.

use serde::Serialize;

use super::{CommandError, Fail, Res, fail, require_app, show};
use crate::channel::{Input, Output, read_input};
use crate::daemon::Daemon;
use crate::store::KeyRecord;
use crate::tls::{self, Mode, TlsError};

fn tls_fail(e: TlsError) -> Fail {
    fail(e.to_string())
}

#[derive(Serialize)]
struct CertView {
    app: String,
    mode: Option<Mode>,
    state: String,
    domains: Vec<String>,
    /// Routed domains the certificate does not cover yet.
    uncovered: Vec<String>,
    issuer: Option<String>,
    not_after: Option<String>,
    serial: Option<String>,
    last_error: Option<String>,
    retry_at: Option<i64>,
}

pub(super) async fn show_certs(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    json: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let s = tls::state(d, app).map_err(tls_fail)?;
    let view = match &s {
        None => CertView {
            app: app.to_string(),
            mode: None,
            state: "none".into(),
            domains: Vec::new(),
            uncovered: d.router.routed_domains(app),
            issuer: None,
            not_after: None,
            serial: None,
            last_error: None,
            retry_at: None,
        },
        Some(s) => CertView {
            app: app.to_string(),
            mode: Some(s.mode),
            state: tls::describe(s, tls::now_unix()).into(),
            domains: s
                .current
                .as_ref()
                .map(|c| c.info.domains.clone())
                .unwrap_or_default(),
            uncovered: tls::uncovered(d, app, s),
            issuer: s.current.as_ref().map(|c| c.info.issuer.clone()),
            not_after: s.current.as_ref().map(|c| c.info.not_after.clone()),
            serial: s.current.as_ref().map(|c| c.info.serial.clone()),
            last_error: s.last_error.clone(),
            retry_at: s.retry_at,
        },
    };
    if json {
        show(out, true, &[&view], None, &[], |_| Vec::new()).await;
        return Ok(());
    }
    let mut text = String::new();
    let mode = match view.mode {
        None => "off (plain HTTP; run certs:enable)",
        Some(Mode::Acme) => "acme",
        Some(Mode::Custom) => "custom (certs:add)",
    };
    text.push_str(&format!(
        "app:        {app}\nmode:       {mode}\nstate:      {}\n",
        view.state
    ));
    if !view.domains.is_empty() {
        text.push_str(&format!("domains:    {}\n", view.domains.join(" ")));
    }
    if !view.uncovered.is_empty() && view.mode.is_some() {
        text.push_str(&format!("uncovered:  {}\n", view.uncovered.join(" ")));
    }
    if let Some(i) = &view.issuer {
        text.push_str(&format!("issuer:     {i}\n"));
    }
    if let Some(n) = &view.not_after {
        text.push_str(&format!("not after:  {n}\n"));
    }
    if let Some(e) = &view.last_error {
        text.push_str(&format!("last error: {e}\n"));
    }
    out.out(text).await;
    Ok(())
}

async fn issue_now(d: &Daemon, app: &str, out: &Output) -> Res {
    out.out(format!("-----> Requesting a certificate for {app}\n"))
        .await;
    let started = std::time::Instant::now();
    let c = tls::issue(d, app)
        .await
        .map_err(|e| fail(format!("no certificate for {app}: {e}; HTTP keeps serving")))?;
    out.out(format!(
        "-----> {app} is served over HTTPS: {} (until {}, {:.1}s)\n",
        c.domains.join(" "),
        c.not_after,
        started.elapsed().as_secs_f64()
    ))
    .await;
    Ok(())
}

pub(super) async fn enable(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    require_app(d, key, app)?;
    if matches!(tls::state(d, app).map_err(tls_fail)?, Some(s) if s.mode == Mode::Custom) {
        return Err(CommandError::Conflict(format!(
            "{app} serves a certificate given with certs:add; run certs:remove first"
        )));
    }
    if d.router.routed_domains(app).is_empty() {
        return Err(tls_fail(TlsError::NotRouted(app.to_string())));
    }
    tls::settings(d).map_err(tls_fail)?;
    tls::enable(d, app).map_err(tls_fail)?;
    issue_now(d, app, out).await
}

pub(super) async fn disable(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    require_app(d, key, app)?;
    if tls::state(d, app).map_err(tls_fail)?.is_none() {
        return Err(CommandError::NotFound(format!("TLS is not on for {app}")));
    }
    tls::disable(d, app).await.map_err(tls_fail)?;
    out.out(format!("-----> {app} is served over plain HTTP only\n"))
        .await;
    Ok(())
}

pub(super) async fn add(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    files: Option<crate::command::CertFiles>,
    mut input: Input,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let text = match files {
        Some(files) => {
            // Reading files of the host is for admins: a deployer could
            // otherwise name any file root can read.
            super::require_admin(key, "certs:add --cert/--key (files on the Quarry host)")?;
            let mut text = read_pem_file("--cert", &files.cert)?;
            text.push_str(&read_pem_file("--key", &files.key)?);
            text
        }
        None => {
            let bytes = read_input(&mut input, 2 * tls::cert::MAX_PEM)
                .await
                .map_err(fail)?;
            String::from_utf8(bytes)
                .map_err(|_| fail("certs:add: standard input is not PEM text"))?
        }
    };
    let (chain, key_pem) = split_pem(&text)?;
    let c = tls::add_custom(d, app, &chain, &key_pem)
        .await
        .map_err(|e| fail(format!("certs:add {app}: {e}")))?;
    out.out(format!(
        "-----> {app} is served over HTTPS with your certificate: {} (until {})\n",
        c.domains.join(" "),
        c.not_after
    ))
    .await;
    Ok(())
}

/// A PEM file named by an admin: a regular file (a link is not followed),
/// at most [`tls::cert::MAX_PEM`] bytes, UTF-8.
fn read_pem_file(flag: &str, path: &std::path::Path) -> Result<String, Fail> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32,
        )
        .open(path)
        .map_err(|e| fail(format!("certs:add: {flag} {shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("certs:add: {flag} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(fail(format!(
            "certs:add: {flag} {shown}: not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.take(tls::cert::MAX_PEM as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("certs:add: {flag} {shown}: {e}")))?;
    if bytes.len() > tls::cert::MAX_PEM {
        return Err(fail(format!(
            "certs:add: {flag} {shown}: longer than {} bytes",
            tls::cert::MAX_PEM
        )));
    }
    String::from_utf8(bytes).map_err(|_| fail(format!("certs:add: {flag} {shown}: not PEM text")))
}

/// Standard input's certificates and its one private key, apart.
fn split_pem(text: &str) -> Result<(String, String), Fail> {
    let mut chain = String::new();
    let mut keys = Vec::new();
    let mut block = String::new();
    let mut label: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(l) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            label = Some(l.to_string());
            block.clear();
        }
        if label.is_some() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            match label.take().as_deref() {
                Some("CERTIFICATE") => chain.push_str(&block),
                Some(l) if l.ends_with("PRIVATE KEY") => keys.push(block.clone()),
                _ => {}
            }
        }
    }
    if chain.is_empty() {
        return Err(fail(
            "certs:add: no certificate on standard input (BEGIN CERTIFICATE)",
        ));
    }
    match keys.len() {
        1 => Ok((chain, keys.remove(0))),
        0 => Err(fail(
            "certs:add: no private key on standard input (BEGIN PRIVATE KEY)",
        )),
        n => Err(fail(format!(
            "certs:add: {n} private keys on standard input; give one"
        ))),
    }
}

pub(super) async fn remove(d: &Daemon, key: &KeyRecord, app: &str, out: &Output) -> Res {
    require_app(d, key, app)?;
    match tls::state(d, app).map_err(tls_fail)? {
        Some(s) if s.mode == Mode::Custom => {}
        Some(_) => {
            return Err(CommandError::Conflict(format!(
                "{app}'s certificate comes from ACME; use certs:disable"
            )));
        }
        None => {
            return Err(CommandError::NotFound(format!(
                "{app} has no certificate given with certs:add"
            )));
        }
    }
    tls::disable(d, app).await.map_err(tls_fail)?;
    out.out(format!(
        "-----> removed {app}'s certificate; it is served over plain HTTP\n"
    ))
    .await;
    Ok(())
}

pub(super) async fn renew(
    d: &Daemon,
    key: &KeyRecord,
    app: &str,
    force: bool,
    out: &Output,
) -> Res {
    require_app(d, key, app)?;
    let Some(s) = tls::state(d, app).map_err(tls_fail)? else {
        return Err(CommandError::NotFound(format!(
            "TLS is not on for {app}; run certs:enable"
        )));
    };
    if s.mode == Mode::Custom {
        return Err(CommandError::Conflict(format!(
            "{app} serves a certificate given with certs:add; Quarry cannot renew it"
        )));
    }
    let mut probe = s.clone();
    probe.retry_at = None;
    let due =
        tls::describe(&probe, tls::now_unix()) != "valid" || !tls::uncovered(d, app, &s).is_empty();
    if !force && !due {
        out.out(format!(
            "-----> {app}'s certificate is valid until {}; nothing to do (use --force)\n",
            s.current.map(|c| c.info.not_after).unwrap_or_default()
        ))
        .await;
        return Ok(());
    }
    issue_now(d, app, out).await
}

/// After `domains:add`: an app with ACME certificates gets the new names.
pub(super) async fn after_domains_add(d: &Daemon, app: &str, out: &Output) -> Res {
    match tls::state(d, app) {
        Ok(Some(s)) if s.mode == Mode::Acme && !tls::uncovered(d, app, &s).is_empty() => {
            issue_now(d, app, out).await
        }
        Ok(_) => Ok(()),
        Err(e) => Err(tls_fail(e)),
    }
}
