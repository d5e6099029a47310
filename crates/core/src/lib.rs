//! The domain core of wrapup: what a leg is, what happens to it, and how it ends.
//!
//! Everything here is pure data and pure functions, so the rule engine and the leg state machine can be tested
//! exhaustively without a platform, a store or a clock. Platform connectors translate platform signals *into* these
//! types; the store persists them; the service moves legs through their states.

pub mod catalog;
pub mod clock;
pub mod event;
pub mod failure;
pub mod ids;
pub mod leg;
pub mod lifecycle;
pub mod outcome;
pub mod rules;
pub mod secret;

pub use clock::Clock;
pub use event::{Event, EventKind};
pub use leg::{Channel, Direction, LegFacts, LegKey, Platform};
pub use outcome::{Mode, Outcome, Timing};
pub use rules::{Conditions, NotesTemplate, Rule, RuleMatch, RuleSet};
pub use secret::Secret;
