//! Configuration errors: each names the file, line and key, and what would be
//! valid, so an operator can fix `proxy.toml` without reading the source.
//! Warnings have the same shape; they name a key this build accepts but does
//! not act on yet, and never fail a load.

use std::fmt;
use std::path::Path;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line; 0 when the problem is not tied to one line.
    pub line: usize,
    /// Dotted key path, e.g. `session.cookie_name` or `route[1].upstream`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        located(f, &self.file, self.line, &self.key, &self.message)
    }
}

/// A key set in the file that nothing in this build reads yet (its feature
/// is not built): worth telling the operator, not worth refusing the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigWarning {
    pub file: String,
    /// 1-based line; 0 when the warning is not tied to one line.
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        located(f, &self.file, self.line, &self.key, &self.message)
    }
}

/// `FILE:LINE: KEY: message`, or `FILE: KEY: message` without a line.
fn located(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    line: usize,
    key: &str,
    msg: &str,
) -> fmt::Result {
    if line > 0 {
        write!(f, "{file}:{line}: {key}: {msg}")
    } else {
        write!(f, "{file}: {key}: {msg}")
    }
}

/// Every problem found while loading a file (validation collects them all).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors against one source text, turning byte offsets into lines.
pub(crate) struct Collector<'a> {
    file: String,
    text: &'a str,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(path: &Path, text: &'a str) -> Self {
        Self {
            file: path.display().to_string(),
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Records an error at a byte offset (`None`: not tied to a line).
    pub(crate) fn push(
        &mut self,
        at: Option<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        let line = at.map(|o| self.line_of(o)).unwrap_or(0);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            key: key.into(),
            message: msg.into(),
        });
    }

    /// Records a warning at a byte offset (`None`: not tied to a line).
    pub(crate) fn warn(&mut self, at: Option<usize>, key: &str, msg: impl Into<String>) {
        let line = at.map(|o| self.line_of(o)).unwrap_or(0);
        self.warnings.push(ConfigWarning {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: msg.into(),
        });
    }

    /// Turns a TOML syntax or schema error into one naming the key at its span.
    pub(crate) fn push_toml(&mut self, err: &toml::de::Error) {
        let at = err.span().map(|s| s.start);
        let key = at.map(|o| key_at(self.text, o)).unwrap_or_default();
        let key = if key.is_empty() {
            "(file)".to_string()
        } else {
            key
        };
        let msg = err.message().trim().replace('\n', " ");
        self.push(at, key, msg);
    }

    /// The warnings when there is no error.
    pub(crate) fn finish(self) -> Result<Vec<ConfigWarning>, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// The dotted key written on the line holding `offset`, prefixed by the
/// nearest table header above it (`[server]`, `[[route]]`).
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(text.len());
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    match (table, key.is_empty()) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, _) => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_names_table_and_key() {
        let text = "[server]\nlisten = 5\n\n[[route]]\nupstream = 1\n";
        assert_eq!(key_at(text, text.find('5').unwrap()), "server.listen");
        assert_eq!(key_at(text, text.find('1').unwrap()), "route.upstream");
    }

    #[test]
    fn display_has_file_line_key() {
        let mut c = Collector::new(Path::new("p.toml"), "a\nb\nc");
        c.push(Some(4), "server.listen", "bad");
        assert_eq!(c.errors[0].to_string(), "p.toml:3: server.listen: bad");
        c.warn(Some(2), "store.path", "unused");
        c.warn(None, "store.path", "unused");
        assert_eq!(c.warnings[0].to_string(), "p.toml:2: store.path: unused");
        assert_eq!(c.warnings[1].to_string(), "p.toml: store.path: unused");
    }
}
