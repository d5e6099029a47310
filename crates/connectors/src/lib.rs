//! Platform connectors: everything wrapup knows about talking to a contact-center platform.
//!
//! One module per platform ([`genesys`], [`cxone`]) holds its typed calls and its event parsing. The pieces every
//! platform needs live in their own modules so the next connector reuses them: the request [`budget`] (pooled
//! credentials, pacing, priority queue), the [`token`] cache (early, single-flight refresh), one retry
//! classification ([`error`]), short deadline-bounded retries ([`retry`]), attempt accounting ([`attempt`]),
//! size-limited HTTP bodies ([`http`]) and a claimed leg's [`place`] in the budget's queue.

pub mod attempt;
pub mod budget;
pub mod call;
pub mod cxone;
pub mod error;
pub mod genesys;
pub mod http;
pub mod place;
pub mod retry;
pub mod token;

pub use attempt::{ApiAttempt, AttemptSink, CallStats, SharedAttemptSink};
pub use budget::{Budget, Permit, Priority, PriorityClass, RateLimits};
pub use call::Precondition;
pub use error::{ErrorClass, PlatformError};
pub use retry::{call_with_retry, RetryPolicy};
