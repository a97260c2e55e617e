//! The cloud clients against real emulators on loopback, in one test binary:
//! GCS (`gcp-storage-emulator`), S3 (`moto_server`, presigned URLs checked
//! against botocore) and the peak memory of a large upload.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod gcs;
mod memory;
mod s3;
