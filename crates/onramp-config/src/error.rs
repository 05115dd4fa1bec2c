//! Configuration errors: each one names the file and the key (or line and column) to fix.
//!
//! Parsing never stops at the first problem. Every stage of loading pushes what it finds into
//! an [`Errors`] collector, and only at the end does [`Errors::finish`] decide between the
//! config and the full, sorted list of errors, so a user fixes a file in one round trip.

use std::fmt;

use crate::path::KeyPath;

/// One problem in a configuration file.
///
/// Displayed as `<file>: <location>: <message>`, for example
/// `onramp.toml: stages.verification.max_attempts: must be at least 1`; as
/// `<file>:<line>:<column>: <message>` for a TOML syntax error; and as `<file>: <message>`
/// when the problem concerns the whole file (for example, it cannot be read).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file the error is in, as given to [`Config::parse`](crate::Config::parse) or
    /// [`Config::load`](crate::Config::load).
    pub file: String,
    /// Where in the file: a TOML path such as `stages.verification.max_attempts`, `line:column`
    /// (both 1-based) for a syntax error, or `""` for the whole file.
    pub location: String,
    /// What is wrong, in words meant for the person editing the file.
    pub message: String,
}

impl ConfigError {
    /// The 1-based line and column of a TOML syntax error, or `None` for errors located by key.
    ///
    /// A key path can never look like `line:column`, because keys containing `:` are printed
    /// quoted.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        let (line, column) = self.location.split_once(':')?;
        Some((line.parse().ok()?, column.parse().ok()?))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else if self.line_column().is_some() {
            write!(f, "{}:{}: {}", self.file, self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.location, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, sorted by location; never empty.
///
/// Displayed as one error per line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where an error was found, ordered so that syntax errors come first, then keys in path order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Location {
    Position { line: usize, column: usize },
    Key(KeyPath),
}

/// Collects errors while a file is being parsed and validated.
#[derive(Debug)]
pub(crate) struct Errors {
    file: String,
    found: Vec<(Location, String)>,
}

impl Errors {
    /// An empty collector for errors in `file`.
    pub(crate) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            found: Vec::new(),
        }
    }

    /// Records a problem with the key at `path` (the root path means the whole file).
    pub(crate) fn at(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.found
            .push((Location::Key(path.clone()), message.into()));
    }

    /// Records a TOML syntax error at a 1-based line and column.
    pub(crate) fn syntax(&mut self, line: usize, column: usize, message: impl Into<String>) {
        self.found
            .push((Location::Position { line, column }, message.into()));
    }

    /// Records that a required key is missing, unless that key already has an error (a
    /// value of the wrong type is dropped after being reported, and must not be reported a
    /// second time as missing).
    pub(crate) fn missing(&mut self, path: &KeyPath, message: impl Into<String>) {
        if !self.has_error_at(path) {
            self.at(path, message);
        }
    }

    /// Records a problem with a value unless that key already has an error (a value whose
    /// `${VAR}` could not be expanded must not also be reported as malformed).
    pub(crate) fn at_unless_reported(&mut self, path: &KeyPath, message: impl Into<String>) {
        if !self.has_error_at(path) {
            self.at(path, message);
        }
    }

    fn has_error_at(&self, path: &KeyPath) -> bool {
        self.found
            .iter()
            .any(|(location, _)| matches!(location, Location::Key(p) if p == path))
    }

    /// `value` if nothing was recorded, otherwise every recorded error, sorted by location.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.found.is_empty() {
            return Ok(value);
        }
        let mut found = self.found;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup();
        let file = self.file;
        Err(ConfigErrors(
            found
                .into_iter()
                .map(|(location, message)| ConfigError {
                    file: file.clone(),
                    location: match location {
                        Location::Position { line, column } => format!("{line}:{column}"),
                        Location::Key(path) => path.to_string(),
                    },
                    message,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(location: &str, message: &str) -> ConfigError {
        ConfigError {
            file: "onramp.toml".into(),
            location: location.into(),
            message: message.into(),
        }
    }

    #[test]
    fn key_errors_show_file_then_path_then_message() {
        let e = error("stages.verification.max_attempts", "must be at least 1");
        assert_eq!(
            e.to_string(),
            "onramp.toml: stages.verification.max_attempts: must be at least 1"
        );
        assert_eq!(e.line_column(), None);
    }

    #[test]
    fn syntax_errors_show_line_and_column_like_a_compiler() {
        let e = error("12:5", "expected `=`");
        assert_eq!(e.to_string(), "onramp.toml:12:5: expected `=`");
        assert_eq!(e.line_column(), Some((12, 5)));
    }

    #[test]
    fn whole_file_errors_have_no_location() {
        let e = error("", "cannot read: not found");
        assert_eq!(e.to_string(), "onramp.toml: cannot read: not found");
    }

    #[test]
    fn the_list_prints_one_error_per_line_sorted_by_location() {
        let mut errors = Errors::new("onramp.toml");
        errors.at(&KeyPath::root().key("tasks").key("b"), "second");
        errors.at(&KeyPath::root().key("stages").key("a"), "first");
        let listed = errors.finish(()).unwrap_err().to_string();
        assert_eq!(
            listed,
            "onramp.toml: stages.a: first\nonramp.toml: tasks.b: second"
        );
    }

    #[test]
    fn a_missing_key_is_not_reported_twice() {
        let mut errors = Errors::new("f");
        let path = KeyPath::root().key("x");
        errors.at(&path, "invalid type");
        errors.missing(&path, "required");
        assert_eq!(errors.finish(()).unwrap_err().0.len(), 1);
    }
}
