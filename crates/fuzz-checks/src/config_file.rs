use std::path::Path;
use wrapup_config::{Config, SecretSource};

struct Fake;

impl SecretSource for Fake {
    fn env(&self, name: &str) -> Result<Option<String>, String> {
        Ok(name.len().is_multiple_of(2).then(|| format!("value-of-{name}")))
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        if path.as_os_str().len().is_multiple_of(2) {
            Ok("file-secret\n".into())
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        }
    }
}

/// The configuration file. Any text must give a `Config` or a list of located problems, never a panic; every
/// problem must point inside the text. Secrets resolve against a fixed fake source (no environment, no files).
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse_with(text, "fuzz.toml", Path::new("/base"), &Fake) {
        Ok(config) => {
            let _ = config.rules.canonical_json();
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "a refusal names at least one problem");
            let lines = text.split('\n').count();
            for e in &errors.errors {
                assert!(e.location.line <= lines.max(1), "{e:?} points past the end of the text");
            }
            let _ = errors.to_string();
        }
    }
}
