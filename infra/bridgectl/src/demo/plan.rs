//! The demo's plan: the S3 key of each invoice fixture and its metadata.
//!
//! A fixture goes under the inbox prefix, under the `scheduled/` prefix that
//! waits for the 08:00 run, or under an unmapped key with the contact and
//! folder in object metadata. One file names a HubSpot record in
//! `x-amz-meta-external-refs` (`docs/inbound.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// File types RecordEngine accepts for upload (`docs/inbound.md`); other files are not dropped.
pub const ACCEPTED_EXTENSIONS: [&str; 12] = [
    "pdf", "jpg", "jpeg", "png", "docx", "xlsx", "csv", "txt", "html", "mp3", "wav", "m4a",
];

/// The path by which an object reaches the upload functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// `inbox/…`: the S3 event starts the upload at once.
    Inbox,
    /// `scheduled/…`: waits for the scheduled upload function.
    Scheduled,
}

/// One object to put in the inbox bucket.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedDrop {
    /// The local file.
    pub file: PathBuf,
    /// The file name, which is also the name RecordEngine shows.
    pub name: String,
    pub key: String,
    pub channel: Channel,
    /// Object metadata without the `x-amz-meta-` prefix.
    pub metadata: BTreeMap<String, String>,
    /// The HubSpot record the object names in `external-refs`, as `(record_type, record_id)`.
    pub hubspot_record: Option<(String, String)>,
}

/// The placement of one known fixture.
struct Placement {
    name: &'static str,
    channel: Channel,
    contact_id: i64,
    folder_id: i64,
    /// Sets the contact and folder in metadata under a key that no prefix maps.
    by_metadata: bool,
    /// HubSpot deal id named in `external-refs`.
    hubspot_deal: Option<&'static str>,
}

/// Contact and folder of a fixture without a placement.
const DEFAULT_CONTACT_FOLDER: (i64, i64) = (5, 12);

/// The bundled fixtures. Contacts stand for the buying entity: 5 in the US,
/// 6 in the EU, 8 in India and 3 in China. Three files wait under
/// `scheduled/`, one is mapped by metadata, and one names a HubSpot deal.
const PLACEMENTS: [Placement; 10] = [
    Placement::inbox("AzureInterior.pdf", 5, 12),
    Placement::scheduled("AmazonWebServices.pdf", 5, 12),
    Placement::inbox("QualityHosting.pdf", 6, 14),
    Placement::inbox("SammyMaystoneLinesTest.pdf", 5, 12),
    Placement::inbox("oyo.pdf", 8, 20),
    Placement::scheduled("FlipkartInvoice.pdf", 8, 20),
    Placement {
        by_metadata: true,
        ..Placement::inbox("NetpresseInvoice.pdf", 6, 14)
    },
    Placement::scheduled("free_fiber.pdf", 6, 14),
    Placement::inbox("fapiao-shenzhen-2024.txt", 3, 7),
    Placement {
        hubspot_deal: Some("9874512031"),
        ..Placement::inbox("northwind-analytics-2024.txt", 5, 12)
    },
];

impl Placement {
    const fn inbox(name: &'static str, contact_id: i64, folder_id: i64) -> Placement {
        Placement {
            name,
            channel: Channel::Inbox,
            contact_id,
            folder_id,
            by_metadata: false,
            hubspot_deal: None,
        }
    }

    const fn scheduled(name: &'static str, contact_id: i64, folder_id: i64) -> Placement {
        Placement {
            channel: Channel::Scheduled,
            ..Placement::inbox(name, contact_id, folder_id)
        }
    }
}

/// Returns whether RecordEngine accepts a file of this name.
pub fn is_accepted(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| ACCEPTED_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()))
}

/// Plans one drop per accepted file in `dir`, in file name order. The
/// `.invoice2data.json` files, the README and the license are not documents
/// RecordEngine accepts, so they stay behind.
pub fn plan_drops(dir: &Path) -> Result<Vec<PlannedDrop>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list the fixtures in {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list the fixtures in {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && is_accepted(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!(
            "{} contains no file of a type RecordEngine accepts ({}): add some, or leave out \
             --fixtures to use the bundled invoices",
            dir.display(),
            ACCEPTED_EXTENSIONS.join(", ")
        );
    }
    names.sort();
    Ok(names.into_iter().map(|name| planned_drop(dir, name)).collect())
}

fn planned_drop(dir: &Path, name: String) -> PlannedDrop {
    let placement = PLACEMENTS.iter().find(|placement| placement.name == name);
    let (contact_id, folder_id) = placement
        .map(|placement| (placement.contact_id, placement.folder_id))
        .unwrap_or(DEFAULT_CONTACT_FOLDER);
    let channel = placement.map_or(Channel::Inbox, |placement| placement.channel);
    let by_metadata = placement.is_some_and(|placement| placement.by_metadata);

    let mut metadata = BTreeMap::new();
    let key = if by_metadata {
        metadata.insert("contact-id".to_owned(), contact_id.to_string());
        metadata.insert("folder-id".to_owned(), folder_id.to_string());
        format!("drop/{name}")
    } else {
        let prefix = match channel {
            Channel::Inbox => "inbox",
            Channel::Scheduled => "scheduled",
        };
        format!("{prefix}/{contact_id}/{folder_id}/{name}")
    };

    let hubspot_record = placement
        .and_then(|placement| placement.hubspot_deal)
        .map(|deal| ("deals".to_owned(), deal.to_owned()));
    if let Some((record_type, record_id)) = &hubspot_record {
        metadata.insert(
            "external-refs".to_owned(),
            serde_json::json!({"hubspot": {"record_id": record_id, "record_type": record_type}}).to_string(),
        );
    }

    PlannedDrop {
        file: dir.join(&name),
        name,
        key,
        channel,
        metadata,
        hubspot_record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/invoices")
    }

    fn find<'a>(drops: &'a [PlannedDrop], name: &str) -> &'a PlannedDrop {
        drops
            .iter()
            .find(|drop| drop.name == name)
            .unwrap_or_else(|| panic!("no drop for {name}"))
    }

    #[test]
    fn every_invoice_is_planned() {
        let drops = plan_drops(&fixtures()).unwrap();

        for placement in &PLACEMENTS {
            find(&drops, placement.name);
        }
        assert!(drops.len() >= 10, "{} drops", drops.len());
        assert!(drops.iter().all(|drop| !drop.name.ends_with(".json")));
        assert!(drops.iter().all(|drop| !drop.name.ends_with(".md")));
    }

    #[test]
    fn keys_follow_each_channel() {
        let drops = plan_drops(&fixtures()).unwrap();

        assert_eq!(find(&drops, "AzureInterior.pdf").key, "inbox/5/12/AzureInterior.pdf");
        let scheduled = find(&drops, "AmazonWebServices.pdf");
        assert_eq!(scheduled.key, "scheduled/5/12/AmazonWebServices.pdf");
        assert_eq!(scheduled.channel, Channel::Scheduled);
        let by_metadata = find(&drops, "NetpresseInvoice.pdf");
        assert_eq!(by_metadata.key, "drop/NetpresseInvoice.pdf");
        assert_eq!(by_metadata.metadata["contact-id"], "6");
        assert_eq!(by_metadata.metadata["folder-id"], "14");
    }

    #[test]
    fn crm_invoice_names_hubspot_deal() {
        let drops = plan_drops(&fixtures()).unwrap();
        let crm = find(&drops, "northwind-analytics-2024.txt");

        let refs: serde_json::Value = serde_json::from_str(&crm.metadata["external-refs"]).unwrap();
        assert_eq!(refs["hubspot"]["record_id"], "9874512031");
        assert_eq!(refs["hubspot"]["record_type"], "deals");
        let named: Vec<&str> = drops
            .iter()
            .filter(|drop| drop.hubspot_record.is_some())
            .map(|drop| drop.name.as_str())
            .collect();
        assert_eq!(named, ["northwind-analytics-2024.txt"]);
    }

    #[test]
    fn unknown_file_goes_to_default_inbox() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.PDF"), b"%PDF").unwrap();
        std::fs::write(dir.path().join("notes.json"), b"{}").unwrap();

        let drops = plan_drops(dir.path()).unwrap();

        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].key, "inbox/5/12/extra.PDF");
        assert!(drops[0].metadata.is_empty());
    }

    #[test]
    fn directory_without_documents_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), b"# none").unwrap();

        let error = plan_drops(dir.path()).unwrap_err().to_string();

        assert!(
            error.contains("contains no file of a type RecordEngine accepts"),
            "{error}"
        );
    }
}
