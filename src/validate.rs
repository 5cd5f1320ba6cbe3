//! Validation of every name that crosses Quarry's edge.
//!
//! App names, node and service names, env keys, domains and key names are
//! checked here, once, before they reach a path, a container name, a label or
//! nginx config. Each check returns the reason as a short lower-case phrase so
//! callers can prefix it with where the value came from.
//!
//! Parse, don't validate: [`app_name`], [`domain`] and [`env_key`] return
//! [`AppName`], [`Domain`] and [`EnvKey`], which can only be made by passing
//! the check (deserializing one checks it too). Code that takes one of them
//! (the router's server names, the command surface) needs no check of its own.
//! Touches nothing.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest command line an SSH client may send.
pub const MAX_COMMAND_LEN: usize = 16 * 1024;
/// Longest value of one environment variable.
pub const MAX_ENV_VALUE_LEN: usize = 64 * 1024;
/// Longest public key line accepted by `keys:add`.
pub const MAX_KEY_LEN: usize = 16 * 1024;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What kind of value it was ("app name", "domain", ...).
    pub what: &'static str,
    /// The offending value, shortened and with control characters escaped.
    pub value: String,
    /// The rule it broke.
    pub rule: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.rule)
    }
}

impl std::error::Error for Invalid {}

fn invalid(what: &'static str, value: &str, rule: &'static str) -> Invalid {
    let mut shown: String = value.chars().take(80).collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    Invalid {
        what,
        value: shown,
        rule,
    }
}

/// A string type that only holds values its check accepts.
macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value, if it passes the check.
            pub fn parse(value: &str) -> Result<$name, Invalid> {
                $check(value)?;
                Ok($name(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Invalid;
            fn from_str(value: &str) -> Result<$name, Invalid> {
                $name::parse(value)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        /// Unit tests write names as literals; a bad one fails the test.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(value: &str) -> $name {
                $name::parse(value).expect("a valid name in a test")
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = String::deserialize(d)?;
                $check(&text).map_err(serde::de::Error::custom)?;
                Ok($name(text))
            }
        }
    };
}

checked_name!(
    /// An app name that passed [`app_name`].
    AppName,
    check_app_name
);
checked_name!(
    /// A host name that passed [`domain`]: safe in nginx's `server_name`.
    Domain,
    check_domain
);
impl Domain {
    /// `<app>.<root>`: an app's default domain. Fails only when the whole
    /// is longer than DNS allows (an app name is a DNS label).
    pub fn under(app: &AppName, root: &Domain) -> Result<Domain, Invalid> {
        Domain::parse(&format!("{app}.{root}"))
    }
}

checked_name!(
    /// An environment variable name that passed [`env_key`].
    EnvKey,
    check_env_key
);

/// `[a-z0-9][a-z0-9-]{0,max-1}`: the shape shared by apps, nodes, services and keys.
fn dns_label(
    what: &'static str,
    value: &str,
    max: usize,
    rule: &'static str,
) -> Result<(), Invalid> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(what, value, rule))
    }
}

/// An app name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn app_name(value: &str) -> Result<AppName, Invalid> {
    AppName::parse(value)
}

/// It is the first label of the app's default domain, so it also ends
/// with a letter or digit.
fn check_app_name(value: &str) -> Result<(), Invalid> {
    const RULE: &str =
        "use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit";
    dns_label("app name", value, 63, RULE)?;
    if value.ends_with('-') {
        return Err(invalid("app name", value, RULE));
    }
    Ok(())
}

/// A node or service name from quarry.yml or a Procfile: `[a-z0-9][a-z0-9-]{0,29}`.
pub fn process_name(what: &'static str, value: &str) -> Result<(), Invalid> {
    dns_label(
        what,
        value,
        30,
        "use 1-30 lower-case letters, digits and '-', starting with a letter or digit",
    )
}

/// A key name: `[a-z0-9][a-z0-9-]{0,62}` (also used as a file name under `keys/`).
pub fn key_name(value: &str) -> Result<(), Invalid> {
    dns_label(
        "key name",
        value,
        63,
        "use 1-63 lower-case letters, digits and '-', starting with a letter or digit",
    )
}

/// An environment variable name: `[A-Z_][A-Z0-9_]*`, at most 128 bytes.
pub fn env_key(value: &str) -> Result<EnvKey, Invalid> {
    EnvKey::parse(value)
}

fn check_env_key(value: &str) -> Result<(), Invalid> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "env key",
            value,
            "use upper-case letters, digits and '_', not starting with a digit",
        ))
    }
}

/// An environment value: any UTF-8 text without NUL, at most [`MAX_ENV_VALUE_LEN`] bytes.
pub fn env_value(key: &str, value: &str) -> Result<(), Invalid> {
    let _ = key;
    if value.len() > MAX_ENV_VALUE_LEN {
        return Err(invalid("env value", value, "longer than 64 KiB"));
    }
    if value.contains('\0') {
        return Err(invalid("env value", value, "contains a NUL byte"));
    }
    Ok(())
}

/// A domain name routed by nginx: lower-case DNS labels joined by dots,
/// optionally starting with `*.`; nothing that nginx could read as syntax.
pub fn domain(value: &str) -> Result<Domain, Invalid> {
    Domain::parse(value)
}

fn check_domain(value: &str) -> Result<(), Invalid> {
    const RULE: &str = "use a host name such as www.example.com (letters, digits, '-' and '.', optionally starting with '*.')";
    let host = value.strip_prefix("*.").unwrap_or(value);
    if host.is_empty() || value.len() > 253 {
        return Err(invalid("domain", value, RULE));
    }
    for label in host.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if !ok {
            return Err(invalid("domain", value, RULE));
        }
    }
    Ok(())
}

/// A release id as typed by a user: `v12` or `12`.
pub fn release_id(value: &str) -> Result<u32, Invalid> {
    let digits = value.strip_prefix('v').unwrap_or(value);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("release", value, "use a release number such as v3"));
    }
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid("release", value, "use a release number such as v3")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in ["a", "myapp", "my-app-2", "0day", &"a".repeat(63)] {
            assert!(app_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a;b",
            "UPPER",
            "-lead",
            "a b",
            "a/b",
            "a.git",
            "a$b",
            "a\nb",
            "trailing-",
            &"a".repeat(64),
        ] {
            assert!(app_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_keys() {
        assert!(env_key("DATABASE_URL").is_ok());
        assert!(env_key("_X1").is_ok());
        for bad in ["", "1X", "lower", "A-B", "A B", "A=B"] {
            assert!(env_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domains() {
        for good in ["www.example.com", "a.localhost", "*.example.com", "x-1.y"] {
            assert!(domain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "a.com;",
            "a.com; include /etc/passwd",
            "a.com}",
            "A.COM",
            "a b.com",
            "*.",
            "a.*.com",
            "$host",
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn release_ids() {
        assert_eq!(release_id("v3"), Ok(3));
        assert_eq!(release_id("12"), Ok(12));
        for bad in ["", "v", "v0", "x3", "v-1", "v99999999999"] {
            assert!(release_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn message_names_value_and_rule() {
        let e = app_name("../x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid app name \"../x\": use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        );
    }

    #[test]
    fn checked_names_are_made_only_by_their_check() {
        let d = domain("shop.example.com").unwrap();
        assert_eq!((d.as_str(), d.len()), ("shop.example.com", 16));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"shop.example.com\"");
        let back: Domain = serde_json::from_str("\"shop.example.com\"").unwrap();
        assert_eq!(back, d);
        // A stored file is attacker-reachable input too: its names are checked.
        let e = serde_json::from_str::<Domain>("\"x;} server { listen 1\"").unwrap_err();
        assert!(e.to_string().starts_with("invalid domain"), "{e}");
        assert!(serde_json::from_str::<AppName>("\"../etc\"").is_err());
        assert!(serde_json::from_str::<EnvKey>("\"A=B\"").is_err());
        assert_eq!("shop".parse::<AppName>().unwrap(), "shop");
        assert_eq!(
            env_key("DATABASE_URL").unwrap().into_string(),
            "DATABASE_URL"
        );
    }
}
