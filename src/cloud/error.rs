//! Why a provider could not answer: one enum for every provider, each
//! variant naming the provider and the request it failed, in the
//! provider's own words where it gave any. Pure.

/// A provider's failure, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "the static provider adds no servers: add one with servers:add, or configure an exec provider in config.yml"
    )]
    StaticAdds,
    #[error("the static provider removes no servers: remove {name} with servers:remove")]
    StaticRemoves { name: String },
    /// The exec provider's program failed `action` (`ping`, `sizes`, …).
    #[error("provider exec ({action}): {reason}")]
    Exec { action: String, reason: String },
    #[error("no instance type has {need} MiB (the largest, {largest}, has {memory} MiB)")]
    NoSizeFits {
        need: u64,
        largest: String,
        memory: u64,
    },
    #[error("the provider offers no instance types")]
    NoSizes,
    /// An `add` answer Quarry cannot use as it stands.
    #[error("provider {provider} answered {what}: {why}")]
    Answer {
        provider: String,
        what: String,
        why: String,
    },
}
