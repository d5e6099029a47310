use wrapup_config::CatalogFile;

/// The catalog file. Any text must give a `CatalogFile` or a list of located problems, never a panic; every problem
/// must point inside the text; a file that reads writes back (export) to a file that reads to the same TOML.
pub fn catalog_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match CatalogFile::parse(text, "fuzz.toml") {
        Ok(file) => {
            let written = file.to_toml();
            let again = CatalogFile::parse(&written, "written.toml").expect("what export writes reads back");
            assert_eq!(again.to_toml(), written, "export is stable");
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "a refusal names at least one problem");
            let lines = text.split('\n').count();
            for e in &errors.errors {
                assert!(e.location.line <= lines.max(1), "{e:?} points past the end of the text");
            }
        }
    }
}
