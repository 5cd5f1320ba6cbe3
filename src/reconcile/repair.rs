//! Release bookkeeping after a crash: which release of an app is live when
//! the records are torn. Pure; the start-up reconcile writes what it decides.
//!
//! A kill at any point of a rollout or of [`crate::deploy::finish`] leaves
//! one of these, and each has one answer:
//! - a release still `deploying`: its push or command never returned
//!   success (the branch did not move), so it is failed;
//! - two releases `live` (killed between the two writes of `finish`, which
//!   marks the new one live first): the newest wins, the other is superseded;
//! - none `live` (records written by an older order, or edited by hand): the
//!   newest superseded release with running containers serves again, else
//!   the newest superseded one. Never "nothing", which would remove every
//!   container of the app.

use std::collections::BTreeSet;

use crate::store::ReleaseStatus;

/// One release as the records and the engine show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub number: u32,
    pub status: ReleaseStatus,
}

/// A status to write, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub number: u32,
    pub status: ReleaseStatus,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It was being rolled out when the daemon stopped.
    Interrupted,
    /// A newer release is live too.
    NewerLive,
    /// No release was live; this one served last.
    ServedLast,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Interrupted => "interrupted: the daemon stopped during the deploy",
            Why::NewerLive => "a newer release is live",
            Why::ServedLast => "no release was live; this one served last",
        }
    }
}

/// What to write so that at most one release is live, and which one that is.
/// `running` holds the release numbers that have running node containers.
pub fn repair(releases: &[Seen], running: &BTreeSet<u32>) -> (Vec<Fix>, Option<u32>) {
    let mut fixes = Vec::new();
    for r in releases {
        if r.status == ReleaseStatus::Deploying {
            fixes.push(Fix {
                number: r.number,
                status: ReleaseStatus::Failed,
                why: Why::Interrupted,
            });
        }
    }
    let numbers_with = |status: ReleaseStatus| {
        let mut v: Vec<u32> = releases
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.number)
            .collect();
        v.sort_unstable();
        v
    };
    let live = numbers_with(ReleaseStatus::Live);
    if let Some((&newest, older)) = live.split_last() {
        for &number in older {
            fixes.push(Fix {
                number,
                status: ReleaseStatus::Superseded,
                why: Why::NewerLive,
            });
        }
        return (fixes, Some(newest));
    }
    let superseded = numbers_with(ReleaseStatus::Superseded);
    let pick = superseded
        .iter()
        .rev()
        .find(|n| running.contains(n))
        .or(superseded.last())
        .copied();
    if let Some(number) = pick {
        fixes.push(Fix {
            number,
            status: ReleaseStatus::Live,
            why: Why::ServedLast,
        });
    }
    (fixes, pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus::*;

    fn seen(list: &[(u32, ReleaseStatus)]) -> Vec<Seen> {
        list.iter()
            .map(|&(number, status)| Seen { number, status })
            .collect()
    }

    fn fix(number: u32, status: ReleaseStatus, why: Why) -> Fix {
        Fix {
            number,
            status,
            why,
        }
    }

    #[test]
    fn sound_records_need_no_fix() {
        let r = seen(&[(1, Superseded), (2, Failed), (3, Live)]);
        assert_eq!(repair(&r, &BTreeSet::from([3])), (vec![], Some(3)));
    }

    #[test]
    fn an_interrupted_deploy_fails_and_the_live_release_stays() {
        // Killed before finish wrote anything: v3's containers may even serve.
        let r = seen(&[(1, Superseded), (2, Live), (3, Deploying)]);
        assert_eq!(
            repair(&r, &BTreeSet::from([3])),
            (vec![fix(3, Failed, Why::Interrupted)], Some(2))
        );
    }

    #[test]
    fn two_live_releases_leave_the_newest_live() {
        // Killed between finish's two writes: the new one is live already.
        let r = seen(&[(1, Superseded), (2, Live), (3, Live)]);
        assert_eq!(
            repair(&r, &BTreeSet::from([3])),
            (vec![fix(2, Superseded, Why::NewerLive)], Some(3))
        );
        let r = seen(&[(1, Live), (2, Live), (3, Live)]);
        assert_eq!(
            repair(&r, &BTreeSet::new()),
            (
                vec![
                    fix(1, Superseded, Why::NewerLive),
                    fix(2, Superseded, Why::NewerLive)
                ],
                Some(3)
            )
        );
    }

    #[test]
    fn no_live_release_falls_back_to_the_newest_superseded() {
        // The old order: v2 superseded first, then the kill before v3 was live.
        let r = seen(&[(1, Superseded), (2, Superseded), (3, Deploying)]);
        assert_eq!(
            repair(&r, &BTreeSet::from([3])),
            (
                vec![
                    fix(3, Failed, Why::Interrupted),
                    fix(2, Live, Why::ServedLast)
                ],
                Some(2)
            )
        );
    }

    #[test]
    fn no_live_release_prefers_the_newest_superseded_that_runs() {
        let r = seen(&[(1, Superseded), (2, Superseded), (3, Failed)]);
        assert_eq!(
            repair(&r, &BTreeSet::from([1, 3])),
            (vec![fix(1, Live, Why::ServedLast)], Some(1))
        );
    }

    #[test]
    fn an_app_that_never_served_has_no_live_release() {
        let r = seen(&[(1, Failed), (2, Deploying)]);
        assert_eq!(
            repair(&r, &BTreeSet::from([2])),
            (vec![fix(2, Failed, Why::Interrupted)], None)
        );
        assert_eq!(repair(&[], &BTreeSet::new()), (vec![], None));
    }
}
