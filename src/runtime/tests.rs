//! The suites table, the requests read from a tree and the choice, word for word.

use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

fn python(files: &[(&str, &str)]) -> Result<Choice, RuntimeError> {
    let dir = tree(files);
    choose(Language::Python, python_request(dir.path())?)
}

fn node(files: &[(&str, &str)]) -> Result<Choice, RuntimeError> {
    let dir = tree(files);
    choose(Language::Node, node_request(dir.path())?)
}

#[test]
fn the_table_is_oldest_first_and_has_the_default() {
    assert_eq!(SUITES[0].name, DEFAULT_SUITE);
    for pair in SUITES.windows(2) {
        assert!(pair[0].pythons[0] < pair[1].pythons[0], "{pair:?}");
        assert!(pair[0].node < pair[1].node, "{pair:?}");
    }
    for s in SUITES {
        // Every Python past the first comes from the suite's extra packages.
        for v in &s.pythons[1..] {
            let pkg = format!("python{}.{}", v[0], v[1]);
            assert!(s.extra_packages.contains(&pkg.as_str()), "{s:?}");
            assert!(s.extra_packages.contains(&format!("{pkg}-venv").as_str()));
        }
    }
    assert_eq!(
        available(Language::Python),
        "3.11 (bookworm), 3.13 (trixie), 3.14, 3.15 (forky)"
    );
    assert_eq!(
        available(Language::Node),
        "18 (bookworm), 20 (trixie), 24 (forky)"
    );
}

#[test]
fn python_versions_pick_the_oldest_suite_that_has_them() {
    let c = python(&[(".python-version", "3.13\n")]).unwrap();
    assert_eq!((c.suite.name, c.binary.as_str()), ("trixie", "python3"));
    assert_eq!(
        c.describe("quarry-stack/trixie"),
        "Python 3.13 (from .python-version 3.13) on quarry-stack/trixie"
    );
    let c = python(&[(".python-version", "# pinned\n3.15.1\n")]).unwrap();
    assert_eq!((c.suite.name, c.binary.as_str()), ("forky", "python3.15"));
    let c = python(&[("runtime.txt", "python-3.11.9")]).unwrap();
    assert_eq!(c.suite.name, "bookworm");
    assert_eq!(
        c.describe("quarry-stack/bookworm:latest"),
        "Python 3.11 (from runtime.txt python-3.11.9) on quarry-stack/bookworm:latest"
    );
    // .python-version wins over runtime.txt, which wins over pyproject.toml.
    let c = python(&[
        (".python-version", "3.14"),
        ("runtime.txt", "python-3.11.2"),
    ])
    .unwrap();
    assert_eq!(c.suite.name, "forky");
    let pyproject = "[project]\nname = \"x\"\nrequires-python = \">=3.12\"\n";
    let c = python(&[("pyproject.toml", pyproject)]).unwrap();
    assert_eq!(c.suite.name, "trixie");
    assert_eq!(
        c.describe("S"),
        "Python 3.13 (from pyproject.toml requires-python >=3.12) on S"
    );
    let c = python(&[("requirements.txt", "flask\n")]).unwrap();
    assert_eq!((c.suite.name, c.request.is_none()), ("bookworm", true));
    assert_eq!(c.describe("S"), "Python 3.11 (the default) on S");
}

#[test]
fn a_pipfile_lock_asks_for_the_python_it_was_locked_for() {
    let lock =
        |requires: &str| format!(r#"{{"_meta": {{"requires": {requires}}}, "default": {{}}}}"#);
    let c = python(&[("Pipfile.lock", &lock(r#"{"python_version": "3.13"}"#))]).unwrap();
    assert_eq!(
        c.describe("S"),
        "Python 3.13 (from Pipfile.lock python_version 3.13) on S"
    );
    let both = r#"{"python_version": "3.13", "python_full_version": "3.14.1"}"#;
    let c = python(&[("Pipfile.lock", &lock(both))]).unwrap();
    assert_eq!(c.suite.name, "forky");
    // After runtime.txt, before pyproject.toml; a lock without [requires] asks nothing.
    let c = python(&[
        ("runtime.txt", "python-3.11.9"),
        ("Pipfile.lock", &lock(r#"{"python_version": "3.13"}"#)),
    ])
    .unwrap();
    assert_eq!(c.suite.name, "bookworm");
    let c = python(&[
        ("Pipfile.lock", &lock("{}")),
        (
            "pyproject.toml",
            "[project]\nrequires-python = \">=3.12\"\n",
        ),
    ])
    .unwrap();
    assert_eq!(c.suite.name, "trixie");
    let e = python(&[("Pipfile.lock", &lock(r#"{"python_version": "2.7"}"#))]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Pipfile.lock python_version: Python 2.7 is not available; available: "),
        "{e}"
    );
}

#[test]
fn python_refusals_name_the_file_and_what_there_is() {
    let e = python(&[(".python-version", "2.7\n")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        ".python-version: Python 2.7 is not available; available: 3.11 (bookworm), 3.13 (trixie), 3.14, 3.15 (forky)"
    );
    let e = python(&[("runtime.txt", "python-3.9.18")]).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "runtime.txt: Python python-3.9.18 is not available; available: 3.11 (bookworm)"
        ),
        "{e}"
    );
    let e = python(&[("runtime.txt", "3.12")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "runtime.txt: \"3.12\" is not python-X.Y.Z (write e.g. python-3.13.1)"
    );
    let e = python(&[(".python-version", "three")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        ".python-version: \"three\" is not a Python version (write e.g. 3.13)"
    );
    let e = python(&[("pyproject.toml", "[project]\nrequires-python = \"<3.8\"\n")]).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "pyproject.toml requires-python: Python <3.8 is not available; available: "
        ),
        "{e}"
    );
}

#[test]
fn requires_python_is_read_from_the_project_table_only() {
    assert_eq!(
        requires_python("[project]\nrequires-python= '>=3.11' # c\n").as_deref(),
        Some(">=3.11")
    );
    assert_eq!(
        requires_python("[tool.x]\nrequires-python = \">=3.14\"\n[project]\nname = \"a\"\n"),
        None
    );
    assert_eq!(requires_python("[project]\nrequires-python = [1]\n"), None);
}

#[test]
fn node_versions_from_engines_then_nvmrc() {
    let c = node(&[("package.json", r#"{"engines": {"node": ">=18 <21"}}"#)]).unwrap();
    assert_eq!(c.suite.name, "bookworm");
    let c = node(&[("package.json", r#"{"engines": {"node": "^20"}}"#)]).unwrap();
    assert_eq!(c.suite.name, "trixie");
    assert_eq!(
        c.describe("S"),
        "Node 20 (from package.json engines.node ^20) on S"
    );
    let c = node(&[("package.json", r#"{"engines": {"node": "24.x"}}"#)]).unwrap();
    assert_eq!((c.suite.name, c.binary.as_str()), ("forky", "node"));
    let c = node(&[("package.json", "{}"), (".nvmrc", "v20.11.0\n")]).unwrap();
    assert_eq!(c.suite.name, "trixie");
    let c = node(&[(".node-version", "lts/*")]).unwrap();
    assert_eq!(c.suite.name, DEFAULT_SUITE);
    let e = node(&[("package.json", r#"{"engines": {"node": "16.x"}}"#)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "package.json engines.node: Node 16.x is not available; available: 18 (bookworm), 20 (trixie), 24 (forky)"
    );
    let e = node(&[("package.json", r#"{"engines": {"node": ">= eighteen"}}"#)]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("package.json engines.node: cannot read"),
        "{e}"
    );
}

#[test]
fn a_linked_version_file_is_not_followed() {
    let dir = tree(&[]);
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join(".python-version")).unwrap();
    let e = python_request(dir.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        ".python-version: .python-version is a symlink, which is not followed"
    );
}
