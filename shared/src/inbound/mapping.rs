//! Which RecordEngine contact, folder and profile an object is filed under.
//!
//! Sources, strongest first:
//!
//! 1. Object metadata `x-amz-meta-contact-id` with `x-amz-meta-folder-id`
//!    (both or neither), and `x-amz-meta-profile-id` on its own.
//! 2. The mapping file: the longest listed key prefix that the key starts with.
//! 3. The path convention `<root>/<contact_id>/<folder_id>/<file>`, for each
//!    configured root (`inbox/` and `scheduled/` by default).
//!
//! A profile id from metadata applies whatever source set the contact and folder.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The mapping compiled into every function: `infra/contact-mapping.yaml`.
pub const BUNDLED_MAPPING: &str = include_str!("../../../infra/contact-mapping.yaml");

/// Where an object goes in RecordEngine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub contact_id: i64,
    pub folder_id: i64,
    pub profile_id: Option<i64>,
    /// How the contact and folder were found, for logs and records.
    pub resolved_by: String,
}

/// An object key that no source maps, or metadata that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// One entry of the mapping file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixMapping {
    /// A key prefix, compared byte for byte with the decoded key (`发票/`, `inbox/acme/`).
    pub prefix: String,
    pub contact_id: i64,
    pub folder_id: i64,
    #[serde(default)]
    pub profile_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    prefixes: Vec<PrefixMapping>,
}

/// The mapping file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactMapping {
    /// Where it was read from, named in every unmapped-key error.
    pub source_name: String,
    pub version: Option<String>,
    /// Longest prefix first.
    pub prefixes: Vec<PrefixMapping>,
}

impl ContactMapping {
    /// Reads a mapping file in YAML or JSON (JSON is read as YAML).
    pub fn from_text(text: &str, source_name: &str) -> Result<Self, MappingError> {
        let fail = |message: String| MappingError(format!("contact mapping {source_name}: {message}"));
        let file: MappingFile = if text.trim().is_empty() {
            MappingFile {
                version: None,
                prefixes: Vec::new(),
            }
        } else {
            let deserializer = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(deserializer).map_err(|error| fail(error.to_string()))?
        };

        let mut seen = BTreeMap::new();
        for (index, entry) in file.prefixes.iter().enumerate() {
            if entry.prefix.is_empty() {
                return Err(fail(format!("prefixes[{index}]: the prefix is empty")));
            }
            if entry.contact_id <= 0 || entry.folder_id <= 0 || entry.profile_id.is_some_and(|id| id <= 0) {
                return Err(fail(format!(
                    "prefixes[{index}] ({:?}): contact_id, folder_id and profile_id must be positive RecordEngine ids",
                    entry.prefix
                )));
            }
            if let Some(earlier) = seen.insert(entry.prefix.clone(), index) {
                return Err(fail(format!(
                    "prefixes[{index}]: prefix {:?} is listed twice (also at prefixes[{earlier}])",
                    entry.prefix
                )));
            }
        }

        let mut prefixes = file.prefixes;
        prefixes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        Ok(ContactMapping {
            source_name: source_name.to_owned(),
            version: file.version,
            prefixes,
        })
    }

    /// The bundled `infra/contact-mapping.yaml`.
    pub fn bundled() -> Result<Self, MappingError> {
        Self::from_text(BUNDLED_MAPPING, "bundled infra/contact-mapping.yaml")
    }

    fn longest_match(&self, key: &str) -> Option<&PrefixMapping> {
        self.prefixes.iter().find(|entry| key.starts_with(&entry.prefix))
    }
}

/// The mapping file together with the path-convention roots.
#[derive(Debug, Clone)]
pub struct MappingRules {
    pub mapping: ContactMapping,
    /// Roots of the `<root>/<contact_id>/<folder_id>/<file>` convention, each ending in `/`.
    pub convention_roots: Vec<String>,
}

impl MappingRules {
    pub fn new(mapping: ContactMapping, convention_roots: &[&str]) -> Self {
        let convention_roots = convention_roots
            .iter()
            .map(|root| {
                let root = root.trim_matches('/');
                format!("{root}/")
            })
            .filter(|root| root != "/")
            .collect();
        MappingRules {
            mapping,
            convention_roots,
        }
    }

    /// Finds the target of `key`. `metadata` is the object's user metadata
    /// with the `x-amz-meta-` prefix removed, as the S3 API returns it.
    pub fn resolve(&self, key: &str, metadata: &BTreeMap<String, String>) -> Result<Target, MappingError> {
        let profile_override = metadata_id(metadata, "profile-id")?;
        let contact = metadata_id(metadata, "contact-id")?;
        let folder = metadata_id(metadata, "folder-id")?;

        let mut target = match (contact, folder) {
            (Some(contact_id), Some(folder_id)) => Target {
                contact_id,
                folder_id,
                profile_id: None,
                resolved_by: "object metadata contact-id and folder-id".into(),
            },
            (Some(_), None) | (None, Some(_)) => {
                return Err(MappingError(format!(
                    "object {key:?} has only one of the metadata entries contact-id and folder-id; set both or neither"
                )));
            }
            (None, None) => self.resolve_key(key)?,
        };
        if profile_override.is_some() {
            target.profile_id = profile_override;
        }
        Ok(target)
    }

    fn resolve_key(&self, key: &str) -> Result<Target, MappingError> {
        if let Some(entry) = self.mapping.longest_match(key) {
            return Ok(Target {
                contact_id: entry.contact_id,
                folder_id: entry.folder_id,
                profile_id: entry.profile_id,
                resolved_by: format!("prefix {:?} in {}", entry.prefix, self.mapping.source_name),
            });
        }
        for root in &self.convention_roots {
            if let Some(target) = convention_target(key, root) {
                return Ok(target);
            }
        }

        let roots: Vec<String> = self
            .convention_roots
            .iter()
            .map(|root| format!("{root}<contact_id>/<folder_id>/<file>"))
            .collect();
        Err(MappingError(format!(
            "object key {key:?} is unmapped: no prefix in {} ({} entries) matches it, it does not follow {}, \
             and it has no contact-id and folder-id metadata",
            self.mapping.source_name,
            self.mapping.prefixes.len(),
            if roots.is_empty() {
                "any path convention (none configured)".to_owned()
            } else {
                roots.join(" or ")
            }
        )))
    }
}

fn convention_target(key: &str, root: &str) -> Option<Target> {
    let rest = key.strip_prefix(root)?;
    let mut segments = rest.splitn(3, '/');
    let contact_id = positive_id(segments.next()?)?;
    let folder_id = positive_id(segments.next()?)?;
    let file = segments.next()?;
    if file.is_empty() {
        return None;
    }
    Some(Target {
        contact_id,
        folder_id,
        profile_id: None,
        resolved_by: format!("path convention {root}<contact_id>/<folder_id>/"),
    })
}

fn positive_id(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|id: &i64| *id > 0)
}

fn metadata_id(metadata: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, MappingError> {
    let Some(value) = metadata
        .get(name)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
    else {
        return Ok(None);
    };
    positive_id(value).map(Some).ok_or_else(|| {
        MappingError(format!(
            "object metadata {name}={value:?} is invalid: expected a positive integer RecordEngine id"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
version: "2026-12-04.1"
prefixes:
  - prefix: "发票/"
    contact_id: 5
    folder_id: 12
  - prefix: "发票/2024/"
    contact_id: 6
    folder_id: 13
    profile_id: 2
  - prefix: "inbox/acme/"
    contact_id: 7
    folder_id: 1
"#;

    fn rules() -> MappingRules {
        MappingRules::new(
            ContactMapping::from_text(MAPPING, "test mapping").unwrap(),
            &["inbox", "scheduled/"],
        )
    }

    fn no_metadata() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn path_convention_maps_ids() {
        let target = rules()
            .resolve("inbox/5/12/this im + age blah.txt", &no_metadata())
            .unwrap();

        assert_eq!((target.contact_id, target.folder_id, target.profile_id), (5, 12, None));
        assert!(target.resolved_by.contains("inbox/<contact_id>/<folder_id>/"));
        let scheduled = rules().resolve("scheduled/8/9/sub/dir/a.pdf", &no_metadata()).unwrap();
        assert_eq!((scheduled.contact_id, scheduled.folder_id), (8, 9));
    }

    #[test]
    fn longest_prefix_wins() {
        let general = rules().resolve("发票/2023年 发票.pdf", &no_metadata()).unwrap();
        let specific = rules().resolve("发票/2024/2024年 发票.pdf", &no_metadata()).unwrap();

        assert_eq!((general.contact_id, general.folder_id), (5, 12));
        assert_eq!(
            (specific.contact_id, specific.folder_id, specific.profile_id),
            (6, 13, Some(2))
        );
        assert!(specific.resolved_by.contains("\"发票/2024/\" in test mapping"));
    }

    #[test]
    fn mapping_file_beats_convention() {
        let target = rules().resolve("inbox/acme/a.pdf", &no_metadata()).unwrap();

        assert_eq!(target.contact_id, 7);
    }

    #[test]
    fn metadata_overrides_everything() {
        let metadata = BTreeMap::from([
            ("contact-id".to_owned(), "40".to_owned()),
            ("folder-id".to_owned(), " 41 ".to_owned()),
            ("profile-id".to_owned(), "42".to_owned()),
        ]);

        let target = rules().resolve("发票/a.pdf", &metadata).unwrap();

        assert_eq!(
            (target.contact_id, target.folder_id, target.profile_id),
            (40, 41, Some(42))
        );
    }

    #[test]
    fn profile_metadata_alone_keeps_mapping() {
        let metadata = BTreeMap::from([("profile-id".to_owned(), "9".to_owned())]);

        let target = rules().resolve("inbox/5/12/a.pdf", &metadata).unwrap();

        assert_eq!(
            (target.contact_id, target.folder_id, target.profile_id),
            (5, 12, Some(9))
        );
    }

    #[test]
    fn half_or_invalid_metadata_is_rejected() {
        let half = BTreeMap::from([("contact-id".to_owned(), "40".to_owned())]);
        let invalid = BTreeMap::from([
            ("contact-id".to_owned(), "acme".to_owned()),
            ("folder-id".to_owned(), "1".to_owned()),
        ]);

        let half_error = rules().resolve("inbox/5/12/a.pdf", &half).unwrap_err();
        let invalid_error = rules().resolve("inbox/5/12/a.pdf", &invalid).unwrap_err();

        assert!(half_error.0.contains("set both or neither"), "{half_error}");
        assert!(
            invalid_error.0.contains("contact-id=\"acme\" is invalid"),
            "{invalid_error}"
        );
    }

    #[test]
    fn unmapped_key_names_key_and_mapping() {
        for key in [
            "other/a.pdf",
            "inbox/a.pdf",
            "inbox/5/a.pdf",
            "inbox/x/12/a.pdf",
            "inbox/5/12/",
            "inbox/0/12/a.pdf",
        ] {
            let error = rules().resolve(key, &no_metadata()).unwrap_err();
            assert!(error.0.contains(&format!("{key:?} is unmapped")), "{error}");
            assert!(error.0.contains("test mapping (3 entries)"), "{error}");
            assert!(error.0.contains("inbox/<contact_id>/<folder_id>/<file>"), "{error}");
        }
    }

    #[test]
    fn json_mapping_is_accepted() {
        let json = r#"{"prefixes": [{"prefix": "发票/", "contact_id": 5, "folder_id": 12}]}"#;

        let mapping = ContactMapping::from_text(json, "json").unwrap();

        assert_eq!(mapping.prefixes.len(), 1);
    }

    #[test]
    fn invalid_mapping_files_are_rejected() {
        let cases = [
            (
                "prefixes: [{prefix: '', contact_id: 1, folder_id: 1}]",
                "the prefix is empty",
            ),
            (
                "prefixes: [{prefix: a/, contact_id: 0, folder_id: 1}]",
                "must be positive",
            ),
            (
                "prefixes: [{prefix: a/, contact_id: 1, folder_id: 1}, {prefix: a/, contact_id: 2, folder_id: 2}]",
                "listed twice",
            ),
            (
                "prefixes: [{prefix: a/, contact: 1, folder_id: 1}]",
                "unknown field `contact`",
            ),
            (
                "prefixes: [{prefix: a/, contact_id: x, folder_id: 1}]",
                "prefixes[0].contact_id",
            ),
        ];
        for (text, expected) in cases {
            let error = ContactMapping::from_text(text, "case").unwrap_err();
            assert!(error.0.contains(expected), "{text}: {error}");
            assert!(error.0.starts_with("contact mapping case: "), "{error}");
        }
    }

    #[test]
    fn bundled_mapping_loads() {
        let mapping = ContactMapping::bundled().unwrap();

        assert_eq!(mapping.source_name, "bundled infra/contact-mapping.yaml");
    }
}
