//! Version ranges as apps write them: PEP 440 specifier sets (pyproject.toml
//! `requires-python`: `>=3.12`, `~=3.11`, `==3.13.*`, `>=3.10,<3.14`) and npm
//! semver ranges (package.json `engines.node`: `>=18 <21`, `^20`, `20.x`,
//! `18 || 20`, `16 - 20`). Only the release numbers count (no pre-releases,
//! epochs or local versions: a runtime from Debian is always a release).
//! Pure: no I/O.

use std::cmp::Ordering;

/// A release version, e.g. `[3, 13, 5]`; missing parts compare as 0.
pub type Release = Vec<u64>;

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the version range {range:?}: {why}")]
pub struct RangeError {
    pub range: String,
    pub why: String,
}

fn bad(range: &str, why: impl Into<String>) -> RangeError {
    RangeError {
        range: range.to_string(),
        why: why.into(),
    }
}

/// `3.13.1` → `[3, 13, 1]`; `v20` → `[20]`. `None` for anything else.
pub fn parse_release(text: &str) -> Option<Release> {
    let text = text.trim().trim_start_matches(['v', 'V']);
    if text.is_empty() {
        return None;
    }
    text.split('.')
        .map(|p| {
            (!p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect()
}

fn cmp(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Whether `version` satisfies the PEP 440 specifier set `spec`.
pub fn pep440_matches(spec: &str, version: &[u64]) -> Result<bool, RangeError> {
    if spec.trim().is_empty() {
        return Err(bad(spec, "empty"));
    }
    for clause in spec.split(',') {
        let clause = clause.trim();
        let op_len = clause
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(clause.len());
        let (op, rest) = clause.split_at(op_len);
        let rest = rest.trim();
        let (text, wildcard) = match rest.strip_suffix(".*") {
            Some(t) => (t, true),
            None => (rest, false),
        };
        let Some(want) = parse_release(text).filter(|_| !text.starts_with(['v', 'V'])) else {
            return Err(bad(spec, format!("{clause:?} is not OPERATOR VERSION")));
        };
        let prefix = |v: &[u64]| (0..want.len()).all(|i| v.get(i).copied().unwrap_or(0) == want[i]);
        let ok = match (op, wildcard) {
            ("==", true) => prefix(version),
            ("!=", true) => !prefix(version),
            ("==" | "===", false) => cmp(version, &want).is_eq(),
            ("!=", false) => cmp(version, &want).is_ne(),
            (">=", false) => cmp(version, &want).is_ge(),
            ("<=", false) => cmp(version, &want).is_le(),
            (">", false) => cmp(version, &want).is_gt(),
            ("<", false) => cmp(version, &want).is_lt(),
            ("~=", false) if want.len() >= 2 => {
                cmp(version, &want).is_ge() && prefix_of(version, &want[..want.len() - 1])
            }
            ("~=", false) => return Err(bad(spec, "~= needs at least two parts (~=3.11)")),
            _ => {
                return Err(bad(
                    spec,
                    format!("{clause:?}: use ==, !=, >=, <=, >, <, ~= or ==X.Y.*"),
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn prefix_of(version: &[u64], prefix: &[u64]) -> bool {
    prefix
        .iter()
        .enumerate()
        .all(|(i, p)| version.get(i).copied().unwrap_or(0) == *p)
}

/// A partial npm version: `20`, `20.1`, `20.x`, `*` (the parts given, up to 3).
fn npm_partial(text: &str, range: &str) -> Result<Vec<u64>, RangeError> {
    let text = text.trim_start_matches(['v', 'V', '=']);
    let mut parts = Vec::new();
    for p in text.split('.').take(3) {
        if matches!(p, "x" | "X" | "*") {
            break;
        }
        // `20.1.0-rc.1`, `20.1.0+build`: the release part only.
        let p = p.split(['-', '+']).next().unwrap_or("");
        match p.parse::<u64>() {
            Ok(n) if !p.is_empty() && p.len() <= 9 => parts.push(n),
            _ => return Err(bad(range, format!("{text:?} is not a version"))),
        }
    }
    Ok(parts)
}

/// The first version past a partial one: `20` → `21`, `20.1` → `20.2`.
fn bump(parts: &[u64]) -> Vec<u64> {
    let mut next = parts.to_vec();
    if let Some(last) = next.last_mut() {
        *last += 1;
    }
    next
}

/// One comparator after desugaring: (ordering wanted, bound).
type Bound = (fn(Ordering) -> bool, Vec<u64>);

fn ge(o: Ordering) -> bool {
    o.is_ge()
}
fn gt(o: Ordering) -> bool {
    o.is_gt()
}
fn lt(o: Ordering) -> bool {
    o.is_lt()
}
fn le(o: Ordering) -> bool {
    o.is_le()
}

/// The bounds one npm comparator (`^20`, `>=18`, `20.x`, `~1.2`) stands for.
fn npm_comparator(token: &str, range: &str) -> Result<Vec<Bound>, RangeError> {
    let (op, rest) = ["<=", ">=", "<", ">", "=", "^", "~"]
        .iter()
        .find_map(|op| token.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", token));
    let rest = rest.trim_start_matches('=');
    let v = npm_partial(rest, range)?;
    if v.is_empty() {
        // `*`, `x`, `>=*`: anything (`<*` matches nothing: refuse it as npm does).
        return match op {
            "<" | ">" => Err(bad(range, format!("{token:?} matches no version"))),
            _ => Ok(Vec::new()),
        };
    }
    let full = v.len() == 3;
    Ok(match op {
        "" | "=" if full => vec![(ge, v.clone()), (le, v)],
        "" | "=" => vec![(ge, v.clone()), (lt, bump(&v))],
        ">=" => vec![(ge, v)],
        ">" if full => vec![(gt, v)],
        ">" => vec![(ge, bump(&v))],
        "<" => vec![(lt, v)],
        "<=" if full => vec![(le, v)],
        "<=" => vec![(lt, bump(&v))],
        "~" if v.len() == 1 => vec![(ge, v.clone()), (lt, bump(&v))],
        "~" => vec![(ge, v.clone()), (lt, bump(&v[..2]))],
        _ => {
            // `^`: the first non-zero part may not change.
            let keep = v.iter().position(|&n| n != 0).map_or(v.len(), |i| i + 1);
            vec![(ge, v.clone()), (lt, bump(&v[..keep.min(v.len())]))]
        }
    })
}

/// Whether `version` satisfies the npm semver range `range`.
pub fn npm_matches(range: &str, version: &[u64]) -> Result<bool, RangeError> {
    if range.len() > 256 {
        return Err(bad(&range[..64], "longer than 256 characters"));
    }
    let mut any = false;
    for set in range.split("||") {
        let set = set.trim();
        let mut bounds: Vec<Bound> = Vec::new();
        if let Some((low, high)) = set.split_once(" - ") {
            let (low, high) = (
                npm_partial(low.trim(), range)?,
                npm_partial(high.trim(), range)?,
            );
            bounds.push((ge, low));
            if high.len() == 3 {
                bounds.push((le, high));
            } else if !high.is_empty() {
                bounds.push((lt, bump(&high)));
            }
        } else {
            // `>= 18` is `>=18`: join an operator with the version after it.
            let mut tokens: Vec<String> = Vec::new();
            for word in set.split_whitespace() {
                match tokens.last_mut() {
                    Some(last) if last.bytes().all(|b| b"<>=^~".contains(&b)) => {
                        last.push_str(word)
                    }
                    _ => tokens.push(word.to_string()),
                }
            }
            for token in &tokens {
                bounds.extend(npm_comparator(token, range)?);
            }
        }
        any |= bounds.iter().all(|(ok, b)| ok(cmp(version, b)));
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("3.13.1"), Some(vec![3, 13, 1]));
        assert_eq!(parse_release("v20\n"), Some(vec![20]));
        assert_eq!(parse_release("3.x"), None);
        assert_eq!(parse_release(""), None);
    }

    #[test]
    fn pep440_common_forms() {
        let py = |spec: &str, v: &[u64]| pep440_matches(spec, v).unwrap();
        assert!(py(">=3.12", &[3, 13, 5]));
        assert!(!py(">=3.12", &[3, 11, 2]));
        assert!(py(">=3.10,<3.14", &[3, 13, 5]));
        assert!(!py(">=3.10, <3.13", &[3, 13, 5]));
        assert!(py("~=3.11", &[3, 13, 5]));
        assert!(!py("~=3.11.1", &[3, 13, 5]));
        assert!(py("~=3.11.1", &[3, 11, 2]));
        assert!(py("==3.13.*", &[3, 13, 5]));
        assert!(!py("==3.13.*", &[3, 14, 8]));
        assert!(py("!=3.12.*,>=3.11", &[3, 13, 5]));
        assert!(py(">3.13", &[3, 13, 5]));
        assert!(!py("<3.11", &[3, 11, 2]));
        assert!(py("== 3.11.2", &[3, 11, 2]));
        assert!(pep440_matches("3.12", &[3, 12]).is_err());
        assert!(pep440_matches("=>3.12", &[3, 12]).is_err());
        assert!(pep440_matches("", &[3, 12]).is_err());
        assert!(pep440_matches("~=3", &[3, 12]).is_err());
    }

    #[test]
    fn npm_common_forms() {
        let node = |r: &str, v: &[u64]| npm_matches(r, v).unwrap();
        assert!(node(">=18 <21", &[20, 19, 2]));
        assert!(!node(">=18 <21", &[24, 21, 0]));
        assert!(node("^20", &[20, 19, 2]));
        assert!(!node("^20", &[18, 19, 0]));
        assert!(node("20.x", &[20, 19, 2]));
        assert!(!node("20.x", &[24, 21, 0]));
        assert!(node("18 || 20", &[20, 19, 2]));
        assert!(node("16 - 20", &[20, 19, 2]));
        assert!(!node("16 - 19.9.0", &[20, 19, 2]));
        assert!(node(">= 18", &[18, 19, 0]));
        assert!(node("~20.1", &[20, 1, 9]));
        assert!(!node("~20.1", &[20, 19, 2]));
        assert!(node("*", &[18, 19, 0]));
        assert!(node("", &[18, 19, 0]));
        assert!(node("v18.19.0", &[18, 19, 0]));
        assert!(!node(">20", &[20, 19, 2]));
        assert!(node(">20.1.0", &[20, 19, 2]));
        assert!(node("<=20", &[20, 19, 2]));
        assert!(node("^0.2.3", &[0, 2, 9]) && !node("^0.2.3", &[0, 3, 0]));
        assert!(npm_matches(">=eighteen", &[18]).is_err());
        assert!(npm_matches("<*", &[18]).is_err());
    }
}
