//! The cloud clients against real emulators on loopback, in one test binary:
//! GCS (`gcp-storage-emulator`), S3 (`moto_server`, checked against botocore
//! and runpod's own upload helper) and the peak memory of a large upload.

mod gcs;
mod memory;
mod s3;
