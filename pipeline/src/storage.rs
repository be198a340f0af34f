//! Object-store locations: the one place that turns a user's path or URL plus its
//! `'storage.*'` options into an [`ObjectStore`] and a prefix.
//!
//! Accepted: local paths (relative or absolute), `file://`, `s3://bucket/prefix`,
//! `memory://name/prefix` (process-local, for tests). S3 honours the standard AWS
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...) and the
//! instance/container credential chain; `'storage.<key>'` options override it,
//! where `<key>` is any object_store S3 configuration key (`endpoint`, `region`,
//! `allow_http`, `access_key_id`, `secret_access_key`, `session_token`,
//! `virtual_hosted_style_request`, ...). Unknown keys are errors.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use url::Url;

use crate::{PipelineError, Result};

/// A resolved storage location: a store and a prefix inside it.
#[derive(Clone, Debug)]
pub struct StorageLocation {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of the location inside the store (no leading or trailing slash).
    pub prefix: ObjPath,
    /// Canonical URL (`file:///abs/path`, `s3://bucket/prefix`), safe to print.
    pub url: String,
    /// For local locations, the absolute filesystem path of the prefix.
    pub local_path: Option<PathBuf>,
}

impl StorageLocation {
    /// Path of `name` (slash-separated, relative) under the prefix.
    pub fn child(&self, name: &str) -> ObjPath {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// A sibling location `prefix + suffix`, e.g. a staging area next to a table.
    pub fn with_suffix(&self, suffix: &str) -> StorageLocation {
        let prefix = ObjPath::from(format!("{}{}", self.prefix.as_ref(), suffix));
        StorageLocation {
            store: self.store.clone(),
            url: format!("{}{}", self.url.trim_end_matches('/'), suffix),
            local_path: self
                .local_path
                .as_ref()
                .map(|p| PathBuf::from(format!("{}{}", p.display(), suffix))),
            prefix,
        }
    }

    /// The key relative to this location's prefix, if `path` is under it.
    pub fn relative<'a>(&self, path: &'a ObjPath) -> Option<String> {
        let parts: Vec<_> = path
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }
}

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

/// Names of the options this module understands, for `storage.*` validation.
pub fn is_storage_option(key: &str) -> bool {
    key.starts_with("storage.")
}

/// Resolve a path or URL. `options` holds the connector's `'storage.*'` options
/// (with the `storage.` prefix).
pub fn resolve(location: &str, options: &BTreeMap<String, String>) -> Result<StorageLocation> {
    let err = |message: String| PipelineError::Storage {
        location: location.to_string(),
        message,
    };
    let storage_opts: Vec<(&str, &str)> = options
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("storage.").map(|k| (k, v.as_str())))
        .collect();
    if location.is_empty() {
        return Err(err("empty path".into()));
    }
    let has_scheme = location.contains("://");
    if !has_scheme || location.starts_with("file://") {
        if let Some((k, _)) = storage_opts.first() {
            return Err(err(format!(
                "option 'storage.{k}' does not apply to local paths"
            )));
        }
        let raw = if has_scheme {
            Url::parse(location)
                .map_err(|e| err(e.to_string()))?
                .to_file_path()
                .map_err(|_| err("not a valid file:// URL".into()))?
        } else {
            PathBuf::from(location)
        };
        let abs = std::path::absolute(&raw).map_err(|e| err(e.to_string()))?;
        let prefix = ObjPath::from_absolute_path(&abs).map_err(|e| err(e.to_string()))?;
        let url = Url::from_file_path(&abs)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| abs.display().to_string());
        return Ok(StorageLocation {
            store: Arc::new(LocalFileSystem::new()),
            prefix,
            url,
            local_path: Some(abs),
        });
    }
    let url = Url::parse(location).map_err(|e| {
        err(format!(
            "{e}; expected a local path, file://, s3:// or memory:// URL"
        ))
    })?;
    let bucket = url.host_str().unwrap_or_default().to_string();
    let prefix = ObjPath::from(url.path().trim_matches('/'));
    match url.scheme() {
        "s3" | "s3a" => {
            if bucket.is_empty() {
                return Err(err("missing bucket name: use s3://BUCKET/prefix".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
            // AWS_ENDPOINT_URL is the standard SDK variable; object_store reads AWS_ENDPOINT.
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            {
                builder = builder.with_endpoint(&endpoint);
                if endpoint.starts_with("http://") {
                    builder = builder.with_allow_http(true);
                }
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            for (k, v) in storage_opts {
                // AmazonS3ConfigKey also parses the HTTP client keys (allow_http, timeout, ...).
                let key = AmazonS3ConfigKey::from_str(k).map_err(|_| {
                    err(format!(
                        "unknown option 'storage.{k}': use an S3 setting such as storage.endpoint, storage.region, storage.allow_http, storage.access_key_id"
                    ))
                })?;
                builder = builder.with_config(key, v);
            }
            let store = builder.build().map_err(|e| err(e.to_string()))?;
            Ok(StorageLocation {
                store: Arc::new(store),
                url: format!("s3://{bucket}/{}", prefix.as_ref()),
                prefix,
                local_path: None,
            })
        }
        "memory" => {
            if let Some((k, _)) = storage_opts.first() {
                return Err(err(format!(
                    "option 'storage.{k}' does not apply to memory:// URLs"
                )));
            }
            let store = MEMORY_STORES
                .lock()
                .expect("memory store registry")
                .entry(bucket.clone())
                .or_default()
                .clone();
            Ok(StorageLocation {
                store,
                url: format!("memory://{bucket}/{}", prefix.as_ref()),
                prefix,
                local_path: None,
            })
        }
        other => Err(err(format!(
            "unsupported scheme '{other}://': use a local path, file://, s3:// or memory://"
        ))),
    }
}
