//! Turning a `path` option (file, directory/prefix, glob; local or any object
//! store URL) into a sorted list of files. Owns glob matching, hidden-file
//! skipping and Hive partition (`k=v/`) parsing; never reads file contents.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use strata_pipeline::storage::{resolve, StorageLocation};
use strata_pipeline::PipelineError;

use crate::{ConnectorError, Result};

/// One file of a `file` source: one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Canonical URL (`file:///abs/x.jsonl`, `s3://bucket/key`): the split id.
    pub url: String,
    /// How the file is named in locations (`data/x.jsonl:17`): the user's path
    /// (up to any glob) joined with the file's path under it.
    pub display: String,
    /// The object's path inside its store.
    pub path: ObjPath,
    /// Size in bytes when listed.
    pub size: u64,
    /// Hive partition values from `k=v/` folders between the root and the file.
    pub partitions: Vec<(String, String)>,
}

/// The files a `path` names, sorted by URL, and the store they live in.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The root location (the directory part of a glob, the directory, or the file).
    pub root: StorageLocation,
    /// Files in URL order.
    pub files: Vec<Arc<FileEntry>>,
}

fn is_glob_char(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | '{')
}

/// Split `path` into the part before any glob and the glob (relative to it).
fn split_glob(path: &str) -> Option<(String, String)> {
    let first = path.find(is_glob_char)?;
    let scheme_end = path.find("://").map(|i| i + 3).unwrap_or(0);
    match path[..first].rfind('/') {
        Some(slash) if slash >= scheme_end => {
            Some((path[..slash].to_string(), path[slash + 1..].to_string()))
        }
        // `s3://bucket*`: the glob is in the bucket name; not supported.
        _ if scheme_end > 0 => None,
        _ => Some((".".to_string(), path.to_string())),
    }
}

fn storage_err(location: &str, source: object_store::Error) -> ConnectorError {
    ConnectorError::Pipeline(PipelineError::ObjectStore {
        location: location.to_string(),
        source,
    })
}

/// List the files `path` names. Errors when it names nothing.
pub async fn list(path: &str, storage: &BTreeMap<String, String>) -> Result<Listing> {
    let has_scheme = path.contains("://");
    if has_scheme
        && path
            .find("://")
            .is_some_and(|i| path[..i].contains(is_glob_char))
    {
        return Err(ConnectorError::InvalidOption {
            option: "path".into(),
            value: path.into(),
            message: "a glob cannot be in the URL scheme".into(),
        });
    }
    if let Some((root_str, pattern)) = split_glob(path) {
        if root_str.ends_with("://")
            || (has_scheme
                && !root_str[root_str.find("://").unwrap_or(0) + 3..].contains(|c| c != '/'))
        {
            return Err(ConnectorError::InvalidOption {
                option: "path".into(),
                value: path.into(),
                message: "a glob cannot be in the bucket name: use s3://BUCKET/prefix/*.jsonl"
                    .into(),
            });
        }
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| ConnectorError::InvalidOption {
                option: "path".into(),
                value: path.into(),
                message: format!("invalid glob: {e}"),
            })?;
        let root = resolve(&root_str, storage)?;
        let files = list_under(&root, &root_str, Some(&glob.compile_matcher())).await?;
        return finish(path, root, files);
    }
    let root = resolve(path, storage)?;
    let is_file = match &root.local_path {
        Some(p) => match std::fs::metadata(p) {
            Ok(m) => m.is_file(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConnectorError::InvalidOption {
                    option: "path".into(),
                    value: path.into(),
                    message: format!("'{}' does not exist", p.display()),
                })
            }
            Err(e) => {
                return Err(ConnectorError::Pipeline(PipelineError::Io {
                    path: p.clone(),
                    source: e,
                }))
            }
        },
        None => {
            !path.ends_with('/')
                && !root.prefix.as_ref().is_empty()
                && root.store.head(&root.prefix).await.is_ok()
        }
    };
    if is_file {
        let meta = root
            .store
            .head(&root.prefix)
            .await
            .map_err(|e| storage_err(&root.url, e))?;
        let entry = FileEntry {
            url: root.url.clone(),
            display: path.to_string(),
            path: root.prefix.clone(),
            size: meta.size,
            partitions: Vec::new(),
        };
        return finish(path, root, vec![entry]);
    }
    let files = list_under(&root, path, None).await?;
    finish(path, root, files)
}

fn finish(path: &str, root: StorageLocation, mut files: Vec<FileEntry>) -> Result<Listing> {
    if files.is_empty() {
        return Err(ConnectorError::InvalidOption {
            option: "path".into(),
            value: path.into(),
            message: format!("no files found under '{}'", root.url),
        });
    }
    files.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(Listing {
        root,
        files: files.into_iter().map(Arc::new).collect(),
    })
}

async fn list_under(
    root: &StorageLocation,
    root_display: &str,
    glob: Option<&GlobMatcher>,
) -> Result<Vec<FileEntry>> {
    let prefix = (!root.prefix.as_ref().is_empty()).then_some(&root.prefix);
    let metas: Vec<_> = root
        .store
        .list(prefix)
        .try_collect()
        .await
        .map_err(|e| storage_err(&root.url, e))?;
    let base_url = root.url.trim_end_matches('/');
    let base_display = root_display.trim_end_matches('/');
    let mut files = Vec::new();
    for meta in metas {
        let Some(rel) = root.relative(&meta.location) else {
            continue;
        };
        if rel.is_empty()
            || rel
                .split('/')
                .any(|part| part.starts_with('.') || part.starts_with('_'))
        {
            continue;
        }
        if let Some(g) = glob {
            if !g.is_match(&rel) {
                continue;
            }
        }
        let partitions = rel
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter_map(|dir| {
                let (k, v) = dir.split_once('=')?;
                (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v)))
            })
            .collect();
        let display = if base_display == "." {
            rel.clone()
        } else {
            format!("{base_display}/{rel}")
        };
        files.push(FileEntry {
            url: format!("{base_url}/{rel}"),
            display,
            path: meta.location,
            size: meta.size,
            partitions,
        });
    }
    Ok(files)
}

/// Decode `%XX` escapes as Hive writes them in partition folder names.
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_split_at_the_last_folder_before_the_pattern() {
        assert_eq!(
            split_glob("data/*.jsonl"),
            Some(("data".into(), "*.jsonl".into()))
        );
        assert_eq!(
            split_glob("data/**/*.jsonl"),
            Some(("data".into(), "**/*.jsonl".into()))
        );
        assert_eq!(split_glob("*.jsonl"), Some((".".into(), "*.jsonl".into())));
        assert_eq!(
            split_glob("s3://b/logs/x*/a.csv"),
            Some(("s3://b/logs".into(), "x*/a.csv".into()))
        );
        assert_eq!(split_glob("data/x.jsonl"), None);
    }

    #[test]
    fn hive_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("x%2Fy"), "x/y");
    }
}
