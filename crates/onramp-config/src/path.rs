//! Locations inside a TOML document, printed the way users write them:
//! `stages.verification.max_attempts`, `templates.standard.tasks[2]`.
//!
//! Every error this crate reports carries one, so `onramp config check` can point at the key
//! to fix. Keys that are not valid TOML bare keys are quoted (`headers."X Api"`), so a printed
//! path is never ambiguous.

use std::fmt;

/// A path from the document root to a key or array element.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyPath(Vec<Segment>);

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Segment {
    /// A key of a table.
    Key(String),
    /// An element of an array.
    Index(usize),
}

impl KeyPath {
    /// The document itself (printed as the empty string).
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// The child `key` of this table.
    pub(crate) fn key(&self, key: impl Into<String>) -> Self {
        self.with(Segment::Key(key.into()))
    }

    /// The element `index` of this array.
    pub(crate) fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// This path followed by `rest`.
    pub(crate) fn join(&self, rest: impl IntoIterator<Item = Segment>) -> Self {
        let mut joined = self.clone();
        joined.0.extend(rest);
        joined
    }

    fn with(&self, segment: Segment) -> Self {
        self.join([segment])
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "\"{}\"", key.escape_default())?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_dotted_keys_and_bracketed_indexes() {
        let path = KeyPath::root()
            .key("templates")
            .key("standard")
            .key("tasks");
        assert_eq!(path.index(2).to_string(), "templates.standard.tasks[2]");
        assert_eq!(KeyPath::root().to_string(), "");
    }

    #[test]
    fn quotes_keys_that_are_not_bare() {
        let path = KeyPath::root().key("headers").key("X Api.Key");
        assert_eq!(path.to_string(), r#"headers."X Api.Key""#);
    }
}
