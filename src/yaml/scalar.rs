//! Scalars under the YAML 1.2 core schema: which plain scalars are null,
//! booleans, integers or floats, and how a value is named in an error
//! ("expected …, found …"). Pure.

use super::tree::{Kind, Value, Yaml};

/// YAML 1.2 core schema resolution of a plain scalar.
pub(super) fn resolve(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return Kind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Kind::Float,
        _ => {}
    }
    if parse_int(text).is_some() {
        Kind::Int
    } else if is_float(text) {
        Kind::Float
    } else {
        Kind::Str
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// A core-schema integer (`12`, `-3`, `0x1f`, `0o17`); `None` if it is not one.
/// Values beyond `i128` still count as integers, reported as out of range.
pub(super) fn parse_int(text: &str) -> Option<Option<i128>> {
    let (radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, text.strip_prefix(['-', '+']).unwrap_or(text))
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i128::from_str_radix(digits, radix).ok();
    Some(if text.starts_with('-') {
        value.map(|v| -v)
    } else {
        value
    })
}

/// How a value is named in "expected …, found …".
pub fn describe(node: &Yaml) -> String {
    match &node.value {
        Value::Scalar {
            kind: Kind::Null, ..
        } => "null".to_owned(),
        Value::Scalar {
            kind: Kind::Str,
            text,
        } => format!("{text:?}"),
        Value::Scalar { text, .. } => text.clone(),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a mapping".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        for (text, kind) in [
            ("", Kind::Null),
            ("~", Kind::Null),
            ("true", Kind::Bool),
            ("yes", Kind::Str),
            ("80", Kind::Int),
            ("-3", Kind::Int),
            ("0x1F", Kind::Int),
            ("0o17", Kind::Int),
            ("1.5", Kind::Float),
            ("1e3", Kind::Float),
            (".5", Kind::Float),
            ("1.", Kind::Float),
            (".inf", Kind::Float),
            (".", Kind::Str),
            ("1e", Kind::Str),
            ("1.2.3", Kind::Str),
            ("redis:7", Kind::Str),
            ("0x", Kind::Str),
        ] {
            assert_eq!(resolve(text), kind, "{text:?}");
        }
    }
}
