//! `app.json`, Heroku's app manifest, as Quarry reads it: parsed into
//! [`AppJson`] (errors `app.json: env.X: reason`; keys Quarry does not use are
//! kept as notes for the build log, as Heroku ignores them), and the pure
//! first-deploy plan: which config vars to set ([`env_plan`]) and the initial
//! scale ([`formation_plan`]). Only [`first`] acts (the db, a one-off).
//!
//! May touch: nothing here (pure); `first` reads the pushed tree confined,
//! writes config vars and the formation, and runs `scripts.postdeploy`.

pub mod first;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The file, at the root of the pushed tree.
pub const FILE: &str = "app.json";
/// Larger files are refused (Heroku's own are a few KiB).
pub const MAX_LEN: u64 = 256 * 1024;

/// What was wrong with app.json, or with the app against it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppJsonError {
    /// Unreadable as a file: the message names it (a link, a FIFO, too large).
    #[error("{0}")]
    Read(String),
    #[error("app.json:{line}: not valid JSON: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("app.json: {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "app.json: env.{key}: required and not set; set it with `config:set {app} {key}=…` and push again"
    )]
    Required { app: String, key: String },
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> AppJsonError {
    AppJsonError::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The parts of app.json Quarry acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppJson {
    pub env: BTreeMap<String, EnvVar>,
    /// Process type → initial quantity.
    pub formation: BTreeMap<String, u32>,
    /// `scripts.postdeploy`, run once after the first successful deploy.
    pub postdeploy: Option<String>,
    /// Keys present but not used, one line each, for the build log.
    pub notes: Vec<String>,
}

/// One `env` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVar {
    pub value: Option<String>,
    /// `generator: "secret"`: a random value made once.
    pub secret: bool,
    /// Heroku's default is true: a key without a value or generator must be
    /// set before the first deploy.
    pub required: bool,
}

/// Keys that describe the app (Heroku Button's page): accepted silently.
const DESCRIPTIVE: &[&str] = &[
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
];

/// Parse app.json's text.
pub fn parse(text: &str) -> Result<AppJson, AppJsonError> {
    let root: Value = serde_json::from_str(text).map_err(|e| AppJsonError::Syntax {
        line: e.line(),
        reason: first_words(&e.to_string()),
    })?;
    let Value::Object(root) = root else {
        return Err(invalid("(top level)", "expected an object"));
    };
    let mut out = AppJson::default();
    for (key, value) in &root {
        match key.as_str() {
            "env" => out.env = env(object(value, "env")?, &mut out.notes)?,
            "formation" => out.formation = formation(object(value, "formation")?, &mut out.notes)?,
            "scripts" => out.postdeploy = scripts(object(value, "scripts")?, &mut out.notes)?,
            "addons" | "buildpacks" | "environments" | "stack" | "image" => out
                .notes
                .push(format!("app.json: {key}: not used by Quarry (ignored)")),
            k if DESCRIPTIVE.contains(&k) => {}
            _ => out
                .notes
                .push(format!("app.json: {key}: unknown key (ignored)")),
        }
    }
    Ok(out)
}

/// serde_json's message without its " at line L column C" tail (the line is
/// given separately).
fn first_words(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, AppJsonError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, format!("expected an object, found {}", kind(value))))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn env(
    map: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, EnvVar>, AppJsonError> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let path = format!("env.{key}");
        crate::validate::env_key(key).map_err(|e| invalid(&path, e.to_string()))?;
        let var = match value {
            // Heroku's shorthand: `"KEY": "value"`.
            Value::String(s) => EnvVar {
                value: Some(s.clone()),
                secret: false,
                required: true,
            },
            Value::Object(fields) => env_var(&path, fields, notes)?,
            other => {
                return Err(invalid(
                    &path,
                    format!("expected a string or an object, found {}", kind(other)),
                ));
            }
        };
        if let Some(v) = &var.value {
            crate::validate::env_value(key, v)
                .map_err(|e| invalid(format!("{path}.value"), e.to_string()))?;
        }
        out.insert(key.clone(), var);
    }
    Ok(out)
}

fn env_var(
    path: &str,
    fields: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<EnvVar, AppJsonError> {
    let mut var = EnvVar {
        required: true,
        ..EnvVar::default()
    };
    for (field, value) in fields {
        let at = format!("{path}.{field}");
        match field.as_str() {
            "description" => {}
            "value" => match value {
                Value::String(s) => var.value = Some(s.clone()),
                other => {
                    return Err(invalid(
                        at,
                        format!("expected a string, found {}", kind(other)),
                    ));
                }
            },
            "required" => match value {
                Value::Bool(b) => var.required = *b,
                other => {
                    return Err(invalid(
                        at,
                        format!("expected true or false, found {}", kind(other)),
                    ));
                }
            },
            "generator" => match value.as_str() {
                Some("secret") => var.secret = true,
                _ => {
                    return Err(invalid(
                        at,
                        format!("unknown generator {value} (the only one is \"secret\")"),
                    ));
                }
            },
            _ => notes.push(format!("app.json: {at}: unknown key (ignored)")),
        }
    }
    Ok(var)
}

fn formation(
    map: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, u32>, AppJsonError> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = format!("formation.{name}");
        crate::validate::process_name("process type", name)
            .map_err(|e| invalid(&path, e.to_string()))?;
        let fields = object(value, &path)?;
        let mut quantity = 1;
        for (field, value) in fields {
            let at = format!("{path}.{field}");
            match field.as_str() {
                "quantity" => {
                    quantity = value
                        .as_u64()
                        .and_then(|q| u32::try_from(q).ok())
                        .filter(|q| *q <= 100)
                        .ok_or_else(|| invalid(&at, "expected a whole number from 0 to 100"))?;
                }
                "size" => notes.push(format!(
                    "app.json: {at}: ignored (a node's size is its quarry.yml memory)"
                )),
                _ => notes.push(format!("app.json: {at}: unknown key (ignored)")),
            }
        }
        out.insert(name.clone(), quantity);
    }
    Ok(out)
}

fn scripts(
    map: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Option<String>, AppJsonError> {
    let mut postdeploy = None;
    for (name, value) in map {
        let path = format!("scripts.{name}");
        match name.as_str() {
            "postdeploy" => {
                // A string, or `{ "command": …, "size": … }`.
                let command = match value {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => match o.get("command") {
                        Some(Value::String(s)) => s.clone(),
                        _ => return Err(invalid(format!("{path}.command"), "expected a string")),
                    },
                    other => {
                        return Err(invalid(
                            &path,
                            format!("expected a string or an object, found {}", kind(other)),
                        ));
                    }
                };
                if command.trim().is_empty() || command.contains(['\0', '\n']) {
                    return Err(invalid(&path, "expected a one-line command"));
                }
                postdeploy = Some(command);
            }
            _ => notes.push(format!("app.json: {path}: not used by Quarry (ignored)")),
        }
    }
    Ok(postdeploy)
}

/// How a config var came to be set on the first deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// app.json's `value`.
    Default,
    /// `generator: "secret"`: never shown.
    Secret,
}

/// The config vars the first deploy sets: those not already set (in the
/// app's config or the global env) get their `value` or a fresh secret from
/// `secret()`; a required key with neither is refused. Pure.
pub fn env_plan(
    app: &str,
    spec: &AppJson,
    is_set: impl Fn(&str) -> bool,
    mut secret: impl FnMut() -> String,
) -> Result<Vec<(String, String, Origin)>, AppJsonError> {
    let mut out = Vec::new();
    for (key, var) in &spec.env {
        if is_set(key) {
            continue;
        }
        if var.secret {
            out.push((key.clone(), secret(), Origin::Secret));
        } else if let Some(value) = &var.value {
            out.push((key.clone(), value.clone(), Origin::Default));
        } else if var.required {
            return Err(AppJsonError::Required {
                app: app.to_owned(),
                key: key.clone(),
            });
        }
    }
    Ok(out)
}

/// The initial scale: app.json's `formation`, only when none was set with
/// `ps:scale`. Pure.
pub fn formation_plan(
    spec: &AppJson,
    current: &BTreeMap<String, u32>,
) -> Option<BTreeMap<String, u32>> {
    (current.is_empty() && !spec.formation.is_empty()).then(|| spec.formation.clone())
}

/// A random 64-hex secret (32 bytes from the OS's generator).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
