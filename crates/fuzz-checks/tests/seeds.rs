//! Replays the committed seeds of every fuzz target (`fuzz/seeds/<target>/`) through the target's checks, so the
//! test suite runs what the fuzzer starts from without cargo-fuzz or an instrumented build. The grown corpora and
//! crash artifacts are not replayed: they are not committed (see `fuzz/.gitignore`), so they would make the result
//! depend on the machine.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// One test per target, named like it; `TARGETS` lists them for the check against `fuzz/Cargo.toml`.
macro_rules! replays {
    ($($target:ident),* $(,)?) => {
        const TARGETS: &[&str] = &[$(stringify!($target)),*];
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), wrapup_fuzz_checks::$target);
            }
        )*
    };
}

replays![
    catalog_file,
    config_file,
    crm_bodies,
    cxone_events,
    ids_and_envelopes,
    intake_envelope,
    rules,
    standard_webhooks,
    websocket_frame,
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs every seed of `target`; fails naming each seed that panicked, and when there is no seed at all (a renamed
/// target or seeds directory must not pass by testing nothing).
fn replay(target: &str, check: fn(&[u8])) {
    let dir = fuzz_dir().join("seeds").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut seeds: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds no seed", dir.display());
    let failed: Vec<String> = seeds
        .iter()
        .filter(|seed| {
            let data = std::fs::read(seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|seed| seed.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: {} of {} seeds panicked: {failed:#?}", failed.len(), seeds.len());
}

#[test]
fn every_fuzz_target_has_a_replay_and_every_replay_a_fuzz_target() {
    let path = fuzz_dir().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let bins: BTreeSet<&str> = manifest["bin"]
        .as_array()
        .expect("[[bin]] targets")
        .iter()
        .map(|bin| bin["name"].as_str().expect("a [[bin]] has a name"))
        .collect();
    let replayed: BTreeSet<&str> = TARGETS.iter().copied().collect();
    assert_eq!(bins, replayed, "the [[bin]] targets of {} and the replays in this file", path.display());
}

#[test]
fn every_seeds_directory_belongs_to_a_fuzz_target() {
    let dir = fuzz_dir().join("seeds");
    let mut stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !TARGETS.contains(&name.as_str()))
        .collect();
    stray.sort();
    assert!(stray.is_empty(), "{} has directories for no target: {stray:?}", dir.display());
}
