//! The `gcs` and `s3` sinks: a bucket prepared before any job (variables
//! read, credentials loaded, permission pre-check passed), then one upload
//! per output file as `<prefix>/<job id>/<subfolder>/<file>`.

use std::sync::Arc;

use comfyver_cloud::{Bucket, Payload, Provider};

use crate::error::HandlerError;
use crate::outputs::{OutputData, OutputItem};
use crate::sink::{OutputSink, sanitize_component};

/// A bucket ready for uploads. Cheap to clone; `Debug` shows no secrets.
#[derive(Debug, Clone)]
pub struct CloudSink {
    bucket: Arc<Bucket>,
    name: &'static str,
}

impl CloudSink {
    /// For `gcs`/`s3`: reads the sink's variables, loads and checks the
    /// credentials and runs the permission pre-check, so that a misconfigured
    /// worker fails before ComfyUI starts. `None` for the other sinks.
    pub fn prepare(sink: &OutputSink) -> Result<Option<CloudSink>, HandlerError> {
        let (provider, name) = match sink {
            OutputSink::Gcs => (Provider::Gcs, "gcs"),
            OutputSink::S3 => (Provider::S3, "s3"),
            OutputSink::Base64 | OutputSink::Dir(_) => return Ok(None),
        };
        let bucket = Bucket::from_env(provider)
            .map_err(|source| HandlerError::Sink { sink: name, source })?;
        CloudSink::from_bucket(bucket).map(Some)
    }

    /// A sink for a bucket configured by the caller; runs the permission pre-check.
    pub fn from_bucket(bucket: Bucket) -> Result<CloudSink, HandlerError> {
        let name = match bucket {
            Bucket::Gcs(_) => "gcs",
            Bucket::S3(_) => "s3",
        };
        bucket
            .check()
            .map_err(|source| HandlerError::Sink { sink: name, source })?;
        Ok(CloudSink {
            bucket: Arc::new(bucket),
            name,
        })
    }

    /// Uploads every file output held in memory and replaces its bytes by
    /// the URL. `job_prefix` (`comfyver/<id>`) is removed from subfolders.
    pub(crate) fn upload(
        &self,
        job_id: &str,
        job_prefix: &str,
        items: &mut [OutputItem],
    ) -> Result<(), HandlerError> {
        let job_id = sanitize_component(job_id);
        for item in items.iter_mut() {
            let OutputData::Bytes(bytes) = &item.data else {
                continue;
            };
            let sub = item
                .subfolder
                .strip_prefix(job_prefix)
                .unwrap_or(&item.subfolder);
            let mut file: Vec<String> = sub
                .split(['/', '\\'])
                .filter(|p| !p.is_empty() && *p != ".")
                .map(sanitize_component)
                .collect();
            file.push(sanitize_component(&item.filename));
            let up = self
                .bucket
                .upload(&job_id, &file.join("/"), Payload::Bytes(bytes))
                .map_err(|source| HandlerError::Sink {
                    sink: self.name,
                    source,
                })?;
            item.data = OutputData::Uploaded {
                url_type: self.bucket.url_type(),
                url: up.url,
                uri: up.uri,
            };
        }
        Ok(())
    }
}
