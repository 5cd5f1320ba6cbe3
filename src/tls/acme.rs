//! The ACME (RFC 8555) client: one order for a set of names, answered with
//! HTTP-01 through Quarry's own nginx or with TLS-ALPN-01 through the
//! responder behind its stream front, ending in a PEM chain and its key.
//!
//! Touches the ACME server over HTTPS, `<data>/tls/account.json` (the
//! account key, 0600) and the router's challenge file or the responder's
//! answers; nothing else.

use std::path::Path;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, Problem, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use super::TlsError;
use crate::alpn::{Answer, Responder};
use crate::config::tls::AcmeConfig;
use crate::route::{Challenge, Router};
use crate::store::{read_json, write_json};

/// `<data>/tls/account.json`.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// How long the server may take to validate and to sign.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(100))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// Who answers the challenges, and so which type is taken.
#[derive(Clone, Copy)]
pub enum Solver<'a> {
    /// HTTP-01: tokens served by the router's nginx.
    Http01(&'a Router),
    /// TLS-ALPN-01: certificates shown by the responder.
    TlsAlpn01(&'a Responder),
}

impl Solver<'_> {
    fn kind(self) -> ChallengeType {
        match self {
            Solver::Http01(_) => ChallengeType::Http01,
            Solver::TlsAlpn01(_) => ChallengeType::TlsAlpn01,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Solver::Http01(_) => "http-01",
            Solver::TlsAlpn01(_) => "tls-alpn-01",
        }
    }

    /// Answer these (replacing what was answered before).
    async fn publish(self, http: &[Challenge], alpn: &[Answer]) -> Result<(), TlsError> {
        match self {
            Solver::Http01(router) => router.set_challenges(http).await.map_err(TlsError::Route),
            Solver::TlsAlpn01(responder) => Ok(responder.set(alpn)?),
        }
    }
}

/// An issued certificate.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Order, validate and fetch a certificate for `domains`.
pub async fn issue(
    solver: Solver<'_>,
    tls_dir: &Path,
    cfg: &AcmeConfig,
    domains: &[String],
) -> Result<Issued, TlsError> {
    let account = account(tls_dir, cfg).await?;
    let ids: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(acme)?;

    // First pass: learn every pending challenge and publish its answer.
    let mut answers = Vec::new();
    let mut alpn_answers = Vec::new();
    {
        let mut authz = order.authorizations();
        while let Some(a) = authz.next().await {
            let mut a = a.map_err(acme)?;
            let domain = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Invalid
                | AuthorizationStatus::Revoked
                | AuthorizationStatus::Expired
                | AuthorizationStatus::Deactivated => {
                    return Err(TlsError::Validation {
                        domain,
                        reason: format!("the authorization is {:?}", a.status).to_lowercase(),
                    });
                }
            }
            let challenge = a.challenge(solver.kind()).ok_or_else(|| {
                TlsError::Acme(format!(
                    "no {} challenge offered for {domain}",
                    solver.name()
                ))
            })?;
            let key_authorization = challenge.key_authorization();
            let mut digest = [0u8; 32];
            digest.copy_from_slice(key_authorization.digest().as_ref());
            alpn_answers.push(Answer {
                domain: domain.clone(),
                digest,
            });
            answers.push(Challenge {
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_string(),
            });
        }
    }
    solver.publish(&answers, &alpn_answers).await?;
    let result = validate_and_fetch(&mut order, solver.kind()).await;
    if let Err(e) = solver.publish(&[], &[]).await {
        tracing::warn!("cannot clear the ACME challenges: {e}");
    }
    result
}

async fn validate_and_fetch(
    order: &mut instant_acme::Order,
    kind: ChallengeType,
) -> Result<Issued, TlsError> {
    {
        let mut authz = order.authorizations();
        while let Some(a) = authz.next().await {
            let mut a = a.map_err(acme)?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut c) = a.challenge(kind.clone()) {
                c.set_ready().await.map_err(acme)?;
            }
        }
    }
    // An invalid order is best told by its failed challenge, which names
    // the domain; the order's own error may not.
    let status = match order.poll_ready(&POLL).await {
        Ok(s) => s,
        Err(e @ instant_acme::Error::Api(_)) => {
            return Err(failed_challenge(order).await.unwrap_or_else(|| acme(e)));
        }
        Err(e) => return Err(acme(e)),
    };
    if status != OrderStatus::Ready {
        return Err(why_invalid(order).await);
    }
    let key_pem = order.finalize().await.map_err(acme)?;
    let chain_pem = order.poll_certificate(&POLL).await.map_err(acme)?;
    Ok(Issued { chain_pem, key_pem })
}

/// The first failed challenge's reason, in the ACME server's words.
async fn why_invalid(order: &mut instant_acme::Order) -> TlsError {
    failed_challenge(order)
        .await
        .unwrap_or_else(|| TlsError::Acme("the order became invalid".into()))
}

/// The first failed challenge of the order, naming its domain.
async fn failed_challenge(order: &mut instant_acme::Order) -> Option<TlsError> {
    let mut authz = order.authorizations();
    while let Some(a) = authz.next().await {
        let Ok(mut a) = a else { continue };
        let domain = a.identifier().to_string();
        let Ok(state) = a.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if let Some(p) = &c.error {
                return Some(TlsError::Validation {
                    domain,
                    reason: problem_text(p),
                });
            }
        }
    }
    None
}

/// The stored account for this directory, or a new one.
async fn account(tls_dir: &Path, cfg: &AcmeConfig) -> Result<Account, TlsError> {
    let directory = cfg.directory_url().to_string();
    let path = tls_dir.join("account.json");
    let builder = || match &cfg.ca_bundle {
        Some(ca) => Account::builder_with_root(&ca.0).map_err(|e| {
            TlsError::Setting(format!(
                "tls.acme.ca_bundle: cannot use {}: {e}",
                ca.0.display()
            ))
        }),
        None => Account::builder().map_err(acme),
    };
    let stored: Option<StoredAccount> = read_json(&path)?;
    if let Some(s) = stored
        && s.directory == directory
    {
        return builder()?
            .from_credentials(s.credentials)
            .await
            .map_err(acme);
    }
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{}", e.0));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .map_err(acme)?;
    write_json(
        &path,
        &StoredAccount {
            directory,
            credentials,
        },
        0o600,
    )?;
    Ok(account)
}

fn problem_text(p: &Problem) -> String {
    let detail = p.detail.clone().unwrap_or_else(|| "no detail given".into());
    match p.r#type.as_deref().and_then(|t| t.rsplit(':').next()) {
        Some(kind) => format!("{kind}: {detail}"),
        None => detail,
    }
}

/// instant-acme's errors as ours; a rate limit is told apart.
fn acme(e: instant_acme::Error) -> TlsError {
    match &e {
        instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited") =>
        {
            TlsError::RateLimited(p.detail.clone().unwrap_or_default())
        }
        instant_acme::Error::Api(p) => TlsError::Acme(problem_text(p)),
        _ => TlsError::Acme(one_line(&e.to_string())),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(json: &str) -> instant_acme::Error {
        instant_acme::Error::Api(serde_json::from_str::<Problem>(json).unwrap())
    }

    #[test]
    fn a_rate_limit_is_told_apart() {
        let e = acme(problem(
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-02T10:00:00Z","status":429}"#,
        ));
        assert_eq!(
            e.to_string(),
            "rate limited by the ACME server: too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-02T10:00:00Z; quarry retries later"
        );
        let e = acme(problem(
            r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"name is blocked","status":400}"#,
        ));
        assert_eq!(
            e.to_string(),
            "the ACME server refused: rejectedIdentifier: name is blocked"
        );
    }
}
