//! onramp's pure domain: everything that decides, nothing that does IO.
//!
//! The storage backends and the engine call into this crate to decide what a change means
//! (which state comes next, which audit entries and events it writes, how long to back off),
//! and then carry the decision out themselves. Keeping decisions here makes them testable
//! without a database and keeps the two backends from drifting apart.
//!
//! Invariants kept here:
//! - every status change of an onboarding goes through [`onboarding::transition`], every
//!   status change of a step through [`step::transition`], every status change of an event
//!   delivery through [`delivery::transition`], every status change of a human task through
//!   [`task::transition`];
//! - time is read only through [`clock::Clock`] and randomness is passed in.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod customer;
pub mod delivery;
pub mod events;
pub mod ids;
pub mod names;
pub mod onboarding;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod outcome;
pub mod pacer;
pub mod plan;
pub mod schedule;
pub mod step;
pub mod task;
pub mod time;
pub mod webhook;

pub use ids::*;
pub use names::*;
