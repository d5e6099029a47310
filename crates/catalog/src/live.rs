//! The live catalog of one connection, as read from the platform: codes with their ids and fields, queues (Genesys)
//! or skills (CXone) with the ids of their codes. The only place ids live; the file and the plan speak names.

use serde::{Deserialize, Serialize};
use wrapup_config::{CatalogFile, CodeFields, CodeSpec, QueueSpec};
use wrapup_core::Platform;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCatalog {
    pub platform: Platform,
    pub codes: Vec<LiveCode>,
    /// Genesys queues or CXone skills.
    pub queues: Vec<LiveQueue>,
    /// Genesys divisions seen on codes and queues, name → id (a code's division is written by id).
    #[serde(default)]
    pub divisions: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCode {
    pub id: String,
    pub name: String,
    /// Every field the platform has (all of this platform's fields are `Some`).
    pub fields: CodeFields,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveQueue {
    pub id: String,
    pub name: String,
    /// The codes assigned; on CXone in priority order.
    pub code_ids: Vec<String>,
    /// CXone `requireDisposition`.
    pub require_disposition: Option<bool>,
}

impl LiveCatalog {
    /// The code of this name: exact first, then case-insensitive (the platforms compare names that way).
    pub fn code(&self, name: &str) -> Option<&LiveCode> {
        self.codes
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.codes.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
    }

    pub fn code_by_id(&self, id: &str) -> Option<&LiveCode> {
        self.codes.iter().find(|c| c.id == id)
    }

    pub fn queue(&self, name: &str) -> Option<&LiveQueue> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn queue_by_id(&self, id: &str) -> Option<&LiveQueue> {
        self.queues.iter().find(|q| q.id == id)
    }

    pub fn division_id(&self, name: &str) -> Option<&str> {
        self.divisions.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, id)| id.as_str())
    }

    /// The catalog as a file: every code with every field, every queue with its codes by name. Codes a queue holds
    /// that the catalog does not list (a system code) are left out, as the file can only name listed codes.
    pub fn to_file(&self) -> CatalogFile {
        let codes = self
            .codes
            .iter()
            .map(|c| CodeSpec { name: c.name.clone(), renamed_from: None, fields: c.fields.clone(), location: None })
            .collect();
        let queues = self
            .queues
            .iter()
            .map(|q| QueueSpec {
                name: q.name.clone(),
                codes: q.code_ids.iter().filter_map(|id| self.code_by_id(id)).map(|c| c.name.clone()).collect(),
                require_disposition: q.require_disposition,
                location: None,
            })
            .collect();
        CatalogFile { platform: self.platform, prune: false, codes, queues }
    }
}
