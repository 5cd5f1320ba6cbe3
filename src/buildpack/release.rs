//! What a buildpack build runs: `bin/release`'s default process types, merged
//! with the app's Procfile or taken alone, and every process started through
//! the stack's entrypoint. Pure.

use std::collections::BTreeMap;

use super::BuildpackError;
use crate::store::ManifestSource;

/// The default process types from `bin/release`'s YAML (its other keys,
/// such as `addons` and `config_vars`, are not read).
pub fn process_types(
    buildpack: &str,
    yaml: &str,
) -> Result<BTreeMap<String, String>, BuildpackError> {
    if yaml.trim().is_empty() || yaml.trim() == "---" {
        return Ok(BTreeMap::new());
    }
    let invalid = |e: crate::yaml::Error| BuildpackError::ReleaseYaml {
        buildpack: buildpack.to_string(),
        detail: e.in_file("bin/release output").to_string(),
    };
    let release = |why: String| BuildpackError::Release {
        buildpack: buildpack.to_string(),
        why,
    };
    let mut types = BTreeMap::new();
    if let Some(root) = crate::yaml::parse(yaml).map_err(invalid)? {
        let root = crate::yaml::At::root(&root);
        for (key, at) in root.entries().map_err(invalid)? {
            if key == "default_process_types" {
                for (name, command) in at.entries().map_err(invalid)? {
                    let command = command.text().map_err(invalid)?;
                    types.insert(name.to_owned(), command.to_owned());
                }
            }
        }
    }
    for (name, command) in &types {
        crate::validate::process_name("process type", name).map_err(|e| release(e.to_string()))?;
        if command.trim().is_empty() || command.contains(['\0', '\n']) {
            return Err(release(format!(
                "the command of {name} is empty or not one line"
            )));
        }
    }
    Ok(types)
}

/// The manifest source of a buildpack release: quarry.yml as pushed; else
/// the Procfile with the buildpack's default process types it lacks added
/// (a Procfile's own types win, as on Heroku); else the defaults alone.
pub fn manifest_source(
    pushed: Option<&ManifestSource>,
    defaults: &BTreeMap<String, String>,
    buildpack: &str,
) -> Result<ManifestSource, BuildpackError> {
    let mut source = match pushed {
        Some(s) if s.file == "quarry.yml" => s.clone(),
        Some(s) => {
            let have: Vec<&str> = s
                .text
                .lines()
                .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
                .collect();
            let missing: Vec<String> = defaults
                .iter()
                .filter(|(n, _)| !have.contains(&n.as_str()))
                .map(|(n, c)| format!("{n}: {c}\n"))
                .collect();
            if missing.is_empty() {
                s.clone()
            } else {
                let mut text = s.text.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "# default process types of the {buildpack} buildpack\n"
                ));
                text.extend(missing);
                ManifestSource {
                    file: format!("Procfile (+ the {buildpack} buildpack's defaults)"),
                    text,
                    buildpack: None,
                }
            }
        }
        None => {
            if defaults.is_empty() {
                return Err(BuildpackError::NoProcessType {
                    buildpack: buildpack.to_string(),
                });
            }
            let mut text = format!("# default process types of the {buildpack} buildpack\n");
            text.extend(defaults.iter().map(|(n, c)| format!("{n}: {c}\n")));
            ManifestSource {
                file: format!("Procfile (from the {buildpack} buildpack)"),
                text,
                buildpack: None,
            }
        }
    };
    source.buildpack = Some(buildpack.to_string());
    Ok(source)
}
