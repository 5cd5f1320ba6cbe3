//! Which images a build or a service may use: never another app's release
//! images (`quarry/<other-app>:vN`), whichever way a Dockerfile names them
//! (`FROM`, `FROM --platform=…`, a build `ARG` default, `COPY --from=`,
//! `RUN --mount=…,from=`), nor an image by its bare id. Pure.

use std::collections::{BTreeMap, BTreeSet};

/// Why an image reference is refused: one line naming the file and the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{file}: image {reference} is named by its id; name images by repository and tag")]
    ById { file: String, reference: String },
    #[error(
        "{file}: image {reference} belongs to another app ({owner}); an app may use only its own quarry/{app} images"
    )]
    OtherApp {
        file: String,
        reference: String,
        owner: String,
        app: String,
    },
}

/// Refuses an image another app owns, or one named by its id.
pub fn check_image(app: &str, file: &str, reference: &str) -> Result<(), ImageError> {
    let name = normalize(reference);
    if looks_like_id(&name) {
        return Err(ImageError::ById {
            file: file.to_owned(),
            reference: reference.to_owned(),
        });
    }
    let repo = repository(&name);
    if let Some(owner) = repo.strip_prefix("quarry/")
        && owner != app
    {
        return Err(ImageError::OtherApp {
            file: file.to_owned(),
            reference: reference.to_owned(),
            owner: owner.to_owned(),
            app: app.to_owned(),
        });
    }
    Ok(())
}

/// Check every image the Dockerfile `text` can pull from.
pub fn check_dockerfile(app: &str, file: &str, text: &str) -> Result<(), ImageError> {
    for reference in references(text) {
        check_image(app, file, &reference)?;
    }
    Ok(())
}

/// `docker.io/library/x` and `x` are one image; names are case-insensitive here.
fn normalize(reference: &str) -> String {
    let r = reference.trim().to_ascii_lowercase();
    let r = r
        .strip_prefix("docker.io/")
        .or_else(|| r.strip_prefix("index.docker.io/"))
        .unwrap_or(&r)
        .to_string();
    r.strip_prefix("library/").map(str::to_string).unwrap_or(r)
}

fn looks_like_id(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The repository of a reference: without `@digest` and `:tag`.
fn repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// The instructions of a Dockerfile: comments dropped, continued lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut escape = '\\';
    for line in text.lines() {
        let l = line.trim();
        let Some(directive) = l.strip_prefix('#') else {
            break;
        };
        let d = directive.trim().to_ascii_lowercase();
        if let Some(v) = d.strip_prefix("escape=") {
            if v.trim() == "`" {
                escape = '`';
            }
        } else if !d.contains('=') {
            break;
        }
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if current.is_empty() && (l.is_empty() || l.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && l.starts_with('#') {
            continue;
        }
        match l.strip_suffix(escape) {
            Some(rest) => {
                current.push_str(rest);
                current.push(' ');
            }
            None => {
                current.push_str(l);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// `$X`, `${X}`, `${X:-word}`, `${X:+word}` from the ARG defaults known.
fn expand(word: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            let (name, op) = match inner.find(':') {
                Some(i) => (inner[..i].to_string(), Some(inner[i + 1..].to_string())),
                None => (inner.clone(), None),
            };
            let value = args.get(&name).cloned().unwrap_or_default();
            out.push_str(&match op {
                Some(w) if w.starts_with('-') => {
                    if value.is_empty() {
                        expand(&w[1..], args)
                    } else {
                        value
                    }
                }
                Some(w) if w.starts_with('+') => {
                    if value.is_empty() {
                        String::new()
                    } else {
                        expand(&w[1..], args)
                    }
                }
                _ => value,
            });
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&args.get(&name).cloned().unwrap_or_default());
        }
    }
    out
}

/// Every image reference a build of `text` may pull: FROM bases that are
/// not earlier stages, and `--from=` sources that are not stages.
pub fn references(text: &str) -> Vec<String> {
    // ARGs before the first FROM are global (FROM lines see only those);
    // each stage starts with none, and a bare `ARG X` in it takes the
    // global default, as the engine does. Quarry passes no build args.
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut local: BTreeMap<String, String> = BTreeMap::new();
    let mut in_stage = false;
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut refs = Vec::new();
    let mut stage_count = 0usize;
    let from_source = |value: &str,
                       stages: &BTreeSet<String>,
                       stage_count: usize,
                       args: &BTreeMap<String, String>| {
        let v = expand(value.trim_matches('"'), args);
        let is_index = v.parse::<usize>().is_ok_and(|i| i < stage_count);
        (!stages.contains(&v.to_ascii_lowercase()) && !is_index).then_some(v)
    };
    for line in instructions(text) {
        let mut words = line.split_whitespace();
        let Some(op) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match op.to_ascii_uppercase().as_str() {
            "ARG" => {
                for a in &rest {
                    let (k, v) = match a.split_once('=') {
                        Some((k, v)) => (k, Some(v.trim_matches('"'))),
                        None => (*a, None),
                    };
                    if in_stage {
                        let value = match v {
                            Some(v) => expand(v, &local),
                            None => global.get(k).cloned().unwrap_or_default(),
                        };
                        local.insert(k.to_string(), value);
                    } else {
                        let value = v.map(|v| expand(v, &global)).unwrap_or_default();
                        global.insert(k.to_string(), value);
                    }
                }
            }
            "FROM" => {
                let plain: Vec<&&str> = rest.iter().filter(|w| !w.starts_with("--")).collect();
                if let Some(base) = plain.first() {
                    let base = expand(base, &global);
                    if !stages.contains(&base.to_ascii_lowercase()) && base != "scratch" {
                        refs.push(base);
                    }
                }
                if plain.len() >= 3 && plain[1].eq_ignore_ascii_case("as") {
                    stages.insert(plain[2].to_ascii_lowercase());
                }
                stage_count += 1;
                in_stage = true;
                local.clear();
            }
            "COPY" | "ADD" | "RUN" => {
                for w in &rest {
                    if let Some(v) = w.strip_prefix("--from=") {
                        refs.extend(from_source(v, &stages, stage_count, &local));
                    }
                    if let Some(m) = w.strip_prefix("--mount=") {
                        for kv in m.split(',') {
                            if let Some(v) = kv.strip_prefix("from=") {
                                refs.extend(from_source(v, &stages, stage_count, &local));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_naming_a_base_image_is_found() {
        let text = "# escape=\\\n\
            ARG BASE=quarry/victim:v1\n\
            FROM --platform=linux/amd64 python:3.12 AS deps\n\
            FROM ${BASE}\n\
            FROM deps AS final\n\
            COPY --from=deps /a /b\n\
            COPY --from=0 /a /b\n\
            COPY --from=quarry/other:v2 /etc /x\n\
            ARG BASE\n\
            COPY --from=$BASE /etc /y\n\
            RUN --mount=type=bind,from=quarry/third:v3,target=/m \\\n  true\n";
        assert_eq!(
            references(text),
            [
                "python:3.12",
                "quarry/victim:v1",
                "quarry/other:v2",
                "quarry/victim:v1",
                "quarry/third:v3"
            ]
        );
    }

    #[test]
    fn another_apps_images_are_refused_and_its_own_are_fine() {
        assert_eq!(
            check_dockerfile("shop", "Dockerfile", "FROM quarry/victim:v1\n")
                .unwrap_err()
                .to_string(),
            "Dockerfile: image quarry/victim:v1 belongs to another app (victim); an app may use only its own quarry/shop images"
        );
        assert_eq!(
            check_image(
                "shop",
                "quarry.yml services.db.image",
                "docker.io/Quarry/Victim:v1"
            )
            .unwrap_err()
            .to_string(),
            "quarry.yml services.db.image: image docker.io/Quarry/Victim:v1 belongs to another app (victim); an app may use only its own quarry/shop images"
        );
        assert!(
            check_image("shop", "Dockerfile", "3f2a9c0d1e2b")
                .unwrap_err()
                .to_string()
                .contains("named by its id")
        );
        check_dockerfile(
            "shop",
            "Dockerfile",
            "FROM quarry/shop:v3\nFROM quarry-stack/bookworm\n",
        )
        .unwrap();
        check_image("shop", "x", "postgres:16").unwrap();
        check_image("shop", "x", "localhost:5000/quarry/x:1").unwrap();
    }
}
