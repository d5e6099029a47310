//! Config problems with their positions: `file:line:column: key.path: message`.

use std::fmt;
use std::ops::Range;

/// A position in a config file. `line` and `column` are 1-based (columns count characters); both are 0 for a
/// problem with the file as a whole (e.g. it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    /// Where in the document, e.g. `rules[2].when.talk_ms`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.path, self.message)
        }
    }
}

/// Every problem found in a config file, in file order. Never empty. Displayed one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Maps byte offsets of one text to line and column.
/// The text of the file at `path`, or the one error saying it cannot be read (`what`: "config file", …).
pub(crate) fn read_text(path: &std::path::Path, what: &str) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            location: Location { file: path.display().to_string(), line: 0, column: 0 },
            path: String::new(),
            message: format!("cannot read {what}: {e}"),
        }],
    })
}

#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    file: String,
    text: String,
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(file: &str, text: &str) -> Self {
        let line_starts =
            std::iter::once(0).chain(text.char_indices().filter(|(_, c)| *c == '\n').map(|(i, _)| i + 1)).collect();
        Self { file: file.to_string(), text: text.to_string(), line_starts }
    }

    pub fn location(&self, span: &Range<usize>) -> Location {
        let offset = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        // Offsets from the parser are char boundaries; be lenient anyway rather than panic.
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        Location { file: self.file.clone(), line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let idx = LineIndex::new("w.toml", "ab\nçd = 1\n\nx");
        assert_eq!(idx.location(&(0..1)).to_string(), "w.toml:1:1");
        assert_eq!(idx.location(&(3..4)).to_string(), "w.toml:2:1");
        assert_eq!(idx.location(&(5..6)).to_string(), "w.toml:2:2");
        assert_eq!(idx.location(&(12..13)).to_string(), "w.toml:4:1");
        assert_eq!(idx.location(&(99..100)).to_string(), "w.toml:4:2");
        assert_eq!(idx.location(&(4..5)).column, 1);
    }
}
