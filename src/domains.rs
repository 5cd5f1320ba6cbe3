//! Domains: one owner per host name across the whole instance.
//!
//! An app's effective domains are its default `<app>.<root>`, the ones added
//! with `domains:add`, those of its live release's quarry.yml and whatever it
//! routes now (`routed.json`). [`claims`] reads them for every app; [`check`]
//! (pure) decides whether an app may take a set of domains: never another
//! app's, never one a wildcard of another app covers (nor a wildcard covering
//! one of theirs), wildcards only when allowed (admins), and under the root
//! domain only the app's own default and names below it. Callers hold
//! `Daemon::routing` from the check until the domains are recorded or routed,
//! so two apps can never both pass.
//! May touch: reads `stacks/*/domains`, `routed.json` and live releases.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Store;

/// A domain and the app it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub domain: String,
    pub app: String,
}

/// Why an app may not have a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("domain {domain} belongs to app {owner}")]
    Taken { domain: String, owner: String },
    #[error("domain {domain} covers {other}, which belongs to app {owner}")]
    Covers {
        domain: String,
        other: String,
        owner: String,
    },
    #[error("domain {domain} is covered by {wildcard}, which belongs to app {owner}")]
    Covered {
        domain: String,
        wildcard: String,
        owner: String,
    },
    #[error("domain {domain}: wildcard domains need an admin key")]
    Wildcard { domain: String },
    #[error(
        "domain {domain} is under the root domain {root}: app {app} may use only {app}.{root} and names below it"
    )]
    UnderRoot {
        domain: String,
        root: String,
        app: String,
    },
}

/// Whether wildcard `w` (`*.example.com`) matches `name` (a host name or a
/// narrower wildcard), the way nginx matches `server_name *.example.com`.
fn covers(w: &str, name: &str) -> bool {
    match w.strip_prefix("*.") {
        Some(suffix) => {
            let host = name.strip_prefix("*.").unwrap_or(name);
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => false,
    }
}

/// Whether `app` may have every domain of `wanted`, given the other apps'
/// `claims` (claims of `app` itself are ignored).
pub fn check(
    app: &str,
    root: &str,
    wanted: &BTreeSet<String>,
    claims: &[Claim],
    wildcards: bool,
) -> Result<(), DomainError> {
    let own = format!("{app}.{root}");
    for domain in wanted {
        if *domain == own {
            continue;
        }
        for c in claims.iter().filter(|c| c.app != app) {
            if c.domain == *domain {
                return Err(DomainError::Taken {
                    domain: domain.clone(),
                    owner: c.app.clone(),
                });
            }
            if covers(domain, &c.domain) {
                return Err(DomainError::Covers {
                    domain: domain.clone(),
                    other: c.domain.clone(),
                    owner: c.app.clone(),
                });
            }
            if covers(&c.domain, domain) {
                return Err(DomainError::Covered {
                    domain: domain.clone(),
                    wildcard: c.domain.clone(),
                    owner: c.app.clone(),
                });
            }
        }
        if domain.starts_with("*.") && !wildcards {
            return Err(DomainError::Wildcard {
                domain: domain.clone(),
            });
        }
        let host = domain.strip_prefix("*.").unwrap_or(domain);
        let under_root = host == root || host.ends_with(&format!(".{root}"));
        let under_own = host.ends_with(&format!(".{own}"));
        if under_root && !under_own {
            return Err(DomainError::UnderRoot {
                domain: domain.clone(),
                root: root.to_string(),
                app: app.to_string(),
            });
        }
    }
    Ok(())
}

/// Why the claims could not be read: the store's error, which names its path.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    #[error("{0}")]
    Store(#[from] std::io::Error),
}

/// Every app's effective domains, except `except`'s.
pub fn claims(store: &Store, root: &str, except: &str) -> Result<Vec<Claim>, ClaimsError> {
    let mut out = Vec::new();
    for app in store.apps()? {
        if app == except {
            continue;
        }
        out.extend(of_app(store, root, &app)?.into_iter().map(|domain| Claim {
            domain,
            app: app.clone(),
        }));
    }
    Ok(out)
}

/// The effective domains of one app.
fn of_app(store: &Store, root: &str, app: &str) -> Result<BTreeSet<String>, ClaimsError> {
    let mut set = BTreeSet::from([format!("{app}.{root}")]);
    set.extend(store.domains(app)?);
    let routed: BTreeMap<String, BTreeSet<String>> =
        crate::store::read_json(&store.app_dir(app).join("routed.json"))?.unwrap_or_default();
    set.extend(routed.into_values().flatten());
    if let Some(live) = store.live_release(app)?
        && let Ok(stack) = crate::stack::from_release(&live)
    {
        for node in stack.manifest.nodes.values() {
            set.extend(node.domains.iter().map(|d| d.to_string()));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn claims() -> Vec<Claim> {
        [
            ("shop.localhost", "shop"),
            ("www.shop.com", "shop"),
            ("*.blog.org", "blog"),
        ]
        .iter()
        .map(|(d, a)| Claim {
            domain: d.to_string(),
            app: a.to_string(),
        })
        .collect()
    }

    fn refusal(wanted: &[&str], wildcards: bool) -> String {
        check("evil", "localhost", &set(wanted), &claims(), wildcards)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn another_apps_domain_is_refused_naming_its_owner() {
        assert_eq!(
            refusal(&["www.shop.com"], false),
            "domain www.shop.com belongs to app shop"
        );
        assert_eq!(
            refusal(&["shop.localhost"], true),
            "domain shop.localhost belongs to app shop"
        );
    }

    #[test]
    fn wildcards_are_refused_where_they_touch_another_app() {
        assert_eq!(
            refusal(&["*.shop.com"], true),
            "domain *.shop.com covers www.shop.com, which belongs to app shop"
        );
        assert_eq!(
            refusal(&["*.localhost"], true),
            "domain *.localhost covers shop.localhost, which belongs to app shop"
        );
        assert_eq!(
            refusal(&["*.com"], true),
            "domain *.com covers www.shop.com, which belongs to app shop"
        );
        assert_eq!(
            refusal(&["a.blog.org"], false),
            "domain a.blog.org is covered by *.blog.org, which belongs to app blog"
        );
        assert_eq!(
            refusal(&["*.x.blog.org"], true),
            "domain *.x.blog.org is covered by *.blog.org, which belongs to app blog"
        );
    }

    #[test]
    fn wildcards_need_an_admin() {
        assert_eq!(
            refusal(&["*.evil.net"], false),
            "domain *.evil.net: wildcard domains need an admin key"
        );
        let ok = check("evil", "localhost", &set(&["*.evil.net"]), &claims(), true);
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn under_the_root_only_the_apps_own_name() {
        assert_eq!(
            refusal(&["other.localhost"], true),
            "domain other.localhost is under the root domain localhost: app evil may use only evil.localhost and names below it"
        );
        assert!(refusal(&["localhost"], true).contains("under the root domain"));
        let own = set(&["evil.localhost", "api.evil.localhost", "www.evil.com"]);
        assert_eq!(check("evil", "localhost", &own, &claims(), false), Ok(()));
    }

    #[test]
    fn covering_is_by_whole_labels() {
        assert!(covers("*.shop.com", "www.shop.com"));
        assert!(covers("*.shop.com", "a.b.shop.com"));
        assert!(!covers("*.shop.com", "shop.com"));
        assert!(!covers("*.shop.com", "myshop.com"));
        assert!(!covers("www.shop.com", "www.shop.com"));
    }
}
