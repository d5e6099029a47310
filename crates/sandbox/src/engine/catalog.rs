//! What both platforms share about their catalogs (Genesys wrap-up codes and queue assignments, CXone dispositions
//! and skill assignments): the ground-truth change log, the snapshot a test compares, the propagation delay of
//! catalog reads, and the deterministic catalog shapes (large generated catalogs and perturbed variants).
//!
//! **Propagation.** A catalog write is applied to the platform's authoritative state at once (so validation, e.g. a
//! second create of the same name, sees it), but the catalog *reads* show it only `catalog_propagation_ms` of
//! simulated time later, as an eventually consistent platform would. [`Lagged`] does this without keeping a second
//! copy of the catalog in step: every write while a delay is set pushes the catalog as it was *before* the write,
//! with the time the write becomes visible; a read at `now` shows the snapshot of the oldest write not yet visible,
//! or the live state when every write is.
//!
//! **Shapes.** Generated names and subsets depend only on their index, and variant perturbations only on the variant
//! number, so two sandboxes with different seeds have the same catalog by name (ids differ).

use crate::engine::iso;
use jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most change-log records a platform keeps (the oldest are dropped first).
pub const MAX_CHANGES: usize = 100_000;

/// Which platform a catalog belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Genesys,
    Cxone,
}

/// One successful catalog write, as the sandbox applied it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogChange {
    /// Order of recording on its platform.
    pub seq: u64,
    /// Simulated time of the write (ISO-8601).
    pub at: String,
    pub platform: Platform,
    /// The OAuth client whose token made the write (Genesys client id; CXone registered application's client id).
    pub client_id: String,
    /// `create`, `update`, `delete` (codes, dispositions, skills), `assign`, `unassign` (Genesys queues).
    pub action: String,
    /// `wrapupCode`, `queue`, `disposition`, `skill`.
    pub object_type: String,
    pub object_id: String,
    pub object_name: String,
    /// The object before and after (`null` when it did not exist / no longer exists). For `assign`/`unassign` and
    /// skills: the assigned code or disposition names, in order.
    pub before: Value,
    pub after: Value,
}

/// A platform's change log, bounded to [`MAX_CHANGES`].
#[derive(Debug, Default)]
pub struct ChangeLog {
    pub entries: VecDeque<CatalogChange>,
    seq: u64,
    /// Woken on every change, so that a test can wait for writes instead of polling for them.
    pub recorded: std::sync::Arc<tokio::sync::Notify>,
}

impl ChangeLog {
    /// Records one change (its `seq` is assigned here).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        at: Timestamp,
        platform: Platform,
        client_id: &str,
        action: &str,
        object_type: &str,
        object_id: &str,
        object_name: &str,
        before: Value,
        after: Value,
    ) {
        self.seq += 1;
        self.recorded.notify_waiters();
        self.entries.push_back(CatalogChange {
            seq: self.seq,
            at: iso(at),
            platform,
            client_id: client_id.to_string(),
            action: action.to_string(),
            object_type: object_type.to_string(),
            object_id: object_id.to_string(),
            object_name: object_name.to_string(),
            before,
            after,
        });
        while self.entries.len() > MAX_CHANGES {
            self.entries.pop_front();
        }
    }
}

/// One code or disposition in a [`CatalogSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    /// Platform fields: Genesys `description`; CXone `notes`, `classificationId`, `isPreviewDisposition`,
    /// `isActive`, `locked`.
    pub fields: BTreeMap<String, Value>,
}

/// A platform's authoritative catalog (not the lagged view of the reads), for tests to compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub platform: Platform,
    /// Sorted by name (case-insensitive), then id.
    pub codes: Vec<CatalogEntry>,
    /// Queue (Genesys) or skill (CXone) name → assigned code names, in assignment (Genesys) or priority (CXone)
    /// order.
    pub assignments: BTreeMap<String, Vec<String>>,
    /// Codes whose name (case-insensitive) another code of the catalog also has: two codes named "Sale" count 2.
    pub duplicate_names: usize,
}

impl CatalogSnapshot {
    pub fn new(platform: Platform, mut codes: Vec<CatalogEntry>, assignments: BTreeMap<String, Vec<String>>) -> Self {
        codes.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id)));
        let duplicate_names = duplicate_names(codes.iter().map(|c| c.name.as_str()));
        Self { platform, codes, assignments, duplicate_names }
    }

    /// The entry named `name` (case-insensitive), if any.
    pub fn code(&self, name: &str) -> Option<&CatalogEntry> {
        self.codes.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// How many names share a name with another one, case-insensitively.
pub fn duplicate_names<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    let mut by: HashMap<String, usize> = HashMap::new();
    for n in names {
        *by.entry(n.to_lowercase()).or_default() += 1;
    }
    by.values().filter(|&&n| n > 1).sum()
}

/// Catalog reads that lag the writes by a propagation delay (see the module docs).
#[derive(Debug)]
pub struct Lagged<T> {
    /// `(visible_at, catalog before the write)`, in write order; `visible_at` never decreases.
    pending: VecDeque<(Timestamp, T)>,
}

impl<T> Default for Lagged<T> {
    fn default() -> Self {
        Self { pending: VecDeque::new() }
    }
}

impl<T> Lagged<T> {
    /// Whether a write now must be remembered (a delay is set, or earlier writes are still invisible).
    pub fn needs_snapshot(&self, delay_ms: u64) -> bool {
        delay_ms > 0 || !self.pending.is_empty()
    }

    /// A write at `now` was applied; `before` is the catalog as it was just before it.
    pub fn written(&mut self, now: Timestamp, delay_ms: u64, before: Option<T>) {
        self.prune(now);
        let Some(before) = before else { return };
        let at = now.checked_add(jiff::SignedDuration::from_millis(delay_ms as i64)).unwrap_or(now);
        // Writes become visible in the order they were made, even if the delay was shortened in between.
        let at = self.pending.back().map_or(at, |(last, _)| at.max(*last));
        if at > now {
            self.pending.push_back((at, before));
        }
    }

    fn prune(&mut self, now: Timestamp) {
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            self.pending.pop_front();
        }
    }

    /// What reads show at `now`: `None` for the live state, or the snapshot of the oldest write not yet visible.
    pub fn view(&self, now: Timestamp) -> Option<&T> {
        self.pending.iter().find(|(at, _)| *at > now).map(|(_, t)| t)
    }
}

/// Name of the `i`-th generated code (from 0): `Code 001`.
pub fn generated_code_name(i: usize) -> String {
    format!("Code {:03}", i + 1)
}

/// Which generated codes the `q`-th generated queue or skill (from 0) gets, out of `codes`: two to six of them,
/// spread over the catalog, from the index alone.
pub fn generated_subset(q: usize, codes: usize) -> Vec<usize> {
    if codes == 0 {
        return Vec::new();
    }
    let k = 2 + q % 5;
    let mut out = Vec::new();
    for t in 0..k {
        let c = (q * 7 + t * 13) % codes;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The perturbation a catalog variant applies, drawn from the variant number only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantPlan {
    /// The code added by hand.
    pub extra_code: String,
    /// The new description (Genesys) or notes (CXone) of one code.
    pub changed_text: String,
    rng_seed: u64,
}

impl VariantPlan {
    pub fn new(variant: u32) -> Option<Self> {
        (variant != 0).then(|| Self {
            extra_code: format!("Added by hand {variant}"),
            changed_text: format!("Changed in variant {variant}"),
            rng_seed: 0x7a21_a7e0 ^ u64::from(variant),
        })
    }

    /// A fresh RNG for the picks (each platform draws the same sequence).
    pub fn rng(&self) -> SmallRng {
        SmallRng::seed_from_u64(self.rng_seed)
    }
}

/// Picks `n` distinct items of `candidates` (sorted first, so the pick depends on names, not on ids or order).
pub fn pick_names(rng: &mut SmallRng, mut candidates: Vec<String>, n: usize) -> Vec<String> {
    candidates.sort();
    candidates.dedup();
    let mut out = Vec::new();
    while out.len() < n && !candidates.is_empty() {
        let i = rng.gen_range(0..candidates.len());
        out.push(candidates.remove(i));
    }
    out
}

/// A catalog by names, as a config describes it: containers (queues or skills) with their code names, codes on no
/// container, and code texts (description or notes) that differ from the default empty one. Shapes are applied to
/// this before a platform builds its catalog, so both platforms get the same shape from the same rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedCatalog {
    pub containers: Vec<(String, Vec<String>)>,
    pub unassigned: Vec<String>,
    pub texts: BTreeMap<String, String>,
}

impl NamedCatalog {
    /// Every code name once, in order of first appearance (containers first).
    pub fn all_codes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in self.containers.iter().flat_map(|(_, c)| c.iter()).chain(self.unassigned.iter()) {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Appends `containers` generated containers (named by `container_name(i)`) and `codes` generated codes
    /// (`Code 001`…), each container with its [`generated_subset`] of the generated codes.
    pub fn generate(&mut self, containers: usize, codes: usize, container_name: impl Fn(usize) -> String) {
        let names: Vec<String> = (0..codes).map(generated_code_name).collect();
        for q in 0..containers {
            let subset = generated_subset(q, codes).into_iter().map(|c| names[c].clone()).collect();
            self.containers.push((container_name(q), subset));
        }
        self.unassigned.extend(names);
    }

    /// Perturbs the catalog as variant `variant` says (nothing for 0): two codes removed (from the catalog and every
    /// container), one code added by hand on no container, one code's text changed, one assignment removed and one
    /// added. `locked` codes are neither removed nor changed.
    pub fn apply_variant(&mut self, variant: u32, locked: &[String]) {
        let Some(plan) = VariantPlan::new(variant) else { return };
        let mut rng = plan.rng();
        let free = |cat: &Self| -> Vec<String> {
            cat.all_codes().into_iter().filter(|n| !locked.iter().any(|l| l.eq_ignore_ascii_case(n))).collect()
        };
        for gone in pick_names(&mut rng, free(self), 2) {
            for (_, codes) in self.containers.iter_mut() {
                codes.retain(|c| c != &gone);
            }
            self.unassigned.retain(|c| c != &gone);
            self.texts.remove(&gone);
        }
        if let Some(changed) = pick_names(&mut rng, free(self), 1).pop() {
            self.texts.insert(changed, plan.changed_text.clone());
        }
        let with_codes: Vec<String> =
            self.containers.iter().filter(|(_, c)| !c.is_empty()).map(|(n, _)| n.clone()).collect();
        let mut removed = None;
        if let Some(container) = pick_names(&mut rng, with_codes, 1).pop() {
            if let Some((_, codes)) = self.containers.iter_mut().find(|(n, _)| *n == container) {
                if let Some(code) = pick_names(&mut rng, codes.clone(), 1).pop() {
                    codes.retain(|c| c != &code);
                    // The code stays in the catalog even if no container has it any more.
                    self.unassigned.push(code.clone());
                    removed = Some((container, code));
                }
            }
        }
        let all = self.all_codes();
        let names: Vec<String> = self.containers.iter().map(|(n, _)| n.clone()).collect();
        for container in pick_names(&mut rng, names, self.containers.len()) {
            let Some((_, codes)) = self.containers.iter_mut().find(|(n, _)| *n == container) else { continue };
            // Not the assignment just removed: the variant must differ by both.
            let missing: Vec<String> = all
                .iter()
                .filter(|c| !codes.contains(c) && removed.as_ref() != Some(&(container.clone(), (*c).clone())))
                .cloned()
                .collect();
            if let Some(code) = pick_names(&mut rng, missing, 1).pop() {
                codes.push(code);
                break;
            }
        }
        self.unassigned.push(plan.extra_code);
    }
}
