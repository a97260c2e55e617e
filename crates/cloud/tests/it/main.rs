//! The cloud clients against real emulators on loopback, in one test binary:
//! GCS (`gcp-storage-emulator`), S3 (`moto_server`, presigned URLs checked
//! against botocore) and the peak memory of a large upload.

mod gcs;
mod memory;
mod s3;
