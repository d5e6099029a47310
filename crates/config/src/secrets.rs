//! Secrets by reference.
//!
//! A config file is shared, reviewed and committed; credentials must not be in it. So every secret field holds a
//! *reference*: `env:NAME` (an environment variable) or `file:PATH` (the file's content, trailing whitespace
//! removed — the shape of Docker and Kubernetes secret files). `literal:VALUE` is accepted so that tests and demos
//! can run without either, and says loudly what it is. Anything else is refused, and the refusal never repeats the
//! value: if it is a pasted secret, it must not end up in a log.
//!
//! Resolution goes through a [`SecretSource`] so that tests need neither a real environment nor files.

use std::path::{Path, PathBuf};

/// Where references are resolved.
pub trait SecretSource {
    /// The value of environment variable `name`: `Ok(None)` when unset, `Err` when set but not UTF-8.
    fn env(&self, name: &str) -> Result<Option<String>, String>;
    /// The content of the file at `path`.
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
}

/// The process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemSecrets;

impl SecretSource for SystemSecrets {
    fn env(&self, name: &str) -> Result<Option<String>, String> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err("is not valid UTF-8".into()),
        }
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference<'a> {
    Env(&'a str),
    File(&'a str),
    Literal(&'a str),
}

impl<'a> Reference<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        if let Some(name) = text.strip_prefix("env:") {
            Some(Reference::Env(name))
        } else if let Some(path) = text.strip_prefix("file:") {
            Some(Reference::File(path))
        } else {
            text.strip_prefix("literal:").map(Reference::Literal)
        }
    }
}

pub(crate) const NOT_A_REFERENCE: &str = "secrets must be given by reference: write `env:NAME` or `file:PATH` \
     (`literal:VALUE` is accepted for tests and demos); the value was not echoed";

/// Resolves a reference. Error messages name the variable or file, never the value.
pub(crate) fn resolve(reference: &Reference<'_>, source: &dyn SecretSource, base_dir: &Path) -> Result<String, String> {
    let value = match reference {
        Reference::Env(name) => {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("`env:` needs a variable name, e.g. `env:WRAPUP_ADMIN_TOKEN` (got {name:?})"));
            }
            match source.env(name) {
                Ok(Some(v)) => v,
                Ok(None) => return Err(format!("environment variable `{name}` is not set")),
                Err(why) => return Err(format!("environment variable `{name}` {why}")),
            }
        }
        Reference::File(path) => {
            if path.is_empty() {
                return Err("`file:` needs a path, e.g. `file:/run/secrets/genesys_client_secret`".into());
            }
            let full: PathBuf = base_dir.join(path);
            match source.read_file(&full) {
                // Secret files usually end with a newline that is not part of the secret.
                Ok(content) => content.trim_end_matches(['\n', '\r', ' ', '\t']).to_string(),
                Err(e) => return Err(format!("cannot read secret file `{}`: {}", full.display(), e.kind())),
            }
        }
        Reference::Literal(v) => v.to_string(),
    };
    if value.is_empty() {
        return Err(match reference {
            Reference::Env(name) => format!("environment variable `{name}` is empty"),
            Reference::File(path) => format!("secret file `{path}` is empty"),
            Reference::Literal(_) => "`literal:` secret is empty".into(),
        });
    }
    Ok(value)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake environment and file system for tests.
    #[derive(Debug, Default, Clone)]
    pub struct FakeSecrets {
        pub env: BTreeMap<String, String>,
        pub files: BTreeMap<PathBuf, String>,
    }

    impl FakeSecrets {
        pub fn with_env(pairs: &[(&str, &str)]) -> Self {
            Self { env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Self::default() }
        }
    }

    impl SecretSource for FakeSecrets {
        fn env(&self, name: &str) -> Result<Option<String>, String> {
            Ok(self.env.get(name).cloned())
        }
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            self.files.get(path).cloned().ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
    }

    #[test]
    fn references_resolve_from_env_files_and_literals() {
        let mut s = FakeSecrets::with_env(&[("A", "alpha")]);
        s.files.insert(PathBuf::from("/etc/w/b"), "beta\n".into());
        let base = Path::new("/etc/w");
        assert_eq!(resolve(&Reference::Env("A"), &s, base).unwrap(), "alpha");
        assert_eq!(resolve(&Reference::File("b"), &s, base).unwrap(), "beta");
        assert_eq!(resolve(&Reference::File("/etc/w/b"), &s, base).unwrap(), "beta");
        assert_eq!(resolve(&Reference::Literal("x"), &s, base).unwrap(), "x");
        assert!(resolve(&Reference::Env("B"), &s, base).unwrap_err().contains("`B` is not set"));
        assert!(resolve(&Reference::File("c"), &s, base).unwrap_err().contains("cannot read secret file"));
        assert!(resolve(&Reference::Env(""), &s, base).is_err());
        assert_eq!(Reference::parse("hunter2"), None);
    }
}
