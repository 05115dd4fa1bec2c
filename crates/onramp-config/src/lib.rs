//! The `onramp.toml` schema (SPEC §5): parsing, `${VAR}` expansion, environment overrides
//! and validation that reports every error with its location.
//!
//! ```
//! # use onramp_config::Config;
//! let text = r#"
//!     [stages.verification]
//!     max_attempts = 3
//!
//!     [tasks.check]
//!     kind = "sim"
//!     stage = "verification"
//!     latency = "10ms"
//! "#;
//! let config = Config::parse(text, "onramp.toml", &|_| None).unwrap();
//! assert_eq!(config.stage(&"verification".parse().unwrap()).max_attempts, 3);
//! ```

mod duration;
mod error;
mod load;
mod model;
mod path;
pub mod references;

pub use duration::{parse_duration, parse_rate};
pub use error::{ConfigError, ConfigErrors};
pub use load::{Env, expand};
pub use model::*;
