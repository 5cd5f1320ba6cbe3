//! The built-in buildpacks (python, node, static, procfile): their scripts,
//! compiled into the binary from `buildpacks/`, and writing them out under
//! the data dir. May touch: `<data>/buildpacks`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The built-in buildpacks in detect order, with their scripts (from `buildpacks/`).
pub const BUILTIN: &[(&str, [(&str, &str); 3])] = &[
    (
        "python",
        [
            ("detect", include_str!("../../buildpacks/python/bin/detect")),
            (
                "compile",
                include_str!("../../buildpacks/python/bin/compile"),
            ),
            (
                "release",
                include_str!("../../buildpacks/python/bin/release"),
            ),
        ],
    ),
    (
        "node",
        [
            ("detect", include_str!("../../buildpacks/node/bin/detect")),
            ("compile", include_str!("../../buildpacks/node/bin/compile")),
            ("release", include_str!("../../buildpacks/node/bin/release")),
        ],
    ),
    (
        "static",
        [
            ("detect", include_str!("../../buildpacks/static/bin/detect")),
            (
                "compile",
                include_str!("../../buildpacks/static/bin/compile"),
            ),
            (
                "release",
                include_str!("../../buildpacks/static/bin/release"),
            ),
        ],
    ),
    (
        "procfile",
        [
            (
                "detect",
                include_str!("../../buildpacks/procfile/bin/detect"),
            ),
            (
                "compile",
                include_str!("../../buildpacks/procfile/bin/compile"),
            ),
            (
                "release",
                include_str!("../../buildpacks/procfile/bin/release"),
            ),
        ],
    ),
];

/// Where the built-in buildpacks are written out.
pub fn builtin_dir(root: &Path) -> PathBuf {
    root.join("buildpacks")
}

/// Write the built-in buildpacks under `<data>/buildpacks/<name>/bin/` (0755),
/// so an installed binary needs no checkout of the repository.
pub fn install(root: &Path) -> io::Result<()> {
    for (name, scripts) in BUILTIN {
        let bin = builtin_dir(root).join(name).join("bin");
        fs::create_dir_all(&bin)?;
        for (script, text) in scripts {
            let path = bin.join(script);
            if fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                crate::store::write_atomic(&path, text.as_bytes(), 0o755)?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}
