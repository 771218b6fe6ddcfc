//! Amazon S3 (AWS profile): [`S3Bucket`], objects under a key prefix of one bucket, and on
//! it [`S3Archive`], the archive port.
//!
//! Both users share the archive's bucket settings (`[archive]` bucket, prefix, region,
//! endpoint, credentials) and keep apart by key: archive parts under `<prefix>raw/`, the
//! DynamoDB dead-letter store's large payloads under `<prefix>dead-letters/`
//! (`src/backends/dynamodb/dead_letters.rs`). Each has its own IAM grant and lifecycle rule
//! (terraform/modules/iam, terraform/modules/s3_archive).
//!
//! Each archive part is one PutObject of the whole body under `<prefix><key>`; S3 writes
//! objects atomically, so a reader never sees a partial part, and the call returns only
//! once the object is stored (durable). With `archive.endpoint_url` set (an emulator such
//! as moto) requests use path-style addressing, as emulators on `127.0.0.1` have no
//! bucket subdomains. Credentials come from the default AWS chain (the task role in ECS)
//! unless `archive.static_credentials` is set.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use fleetwire_actors::archive::ArchiveConfig;
use fleetwire_actors::ports::{ArchiveError, ArchiveSink};

use crate::backends::aws;

/// Objects under a key prefix of one bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    /// The S3 client (shared SDK settings: region, endpoint, timeouts).
    client: Client,
    /// The bucket (`archive.bucket`).
    bucket: String,
    /// Prepended to every key (`archive.prefix`), e.g. `fleetwire/`.
    prefix: String,
}

impl S3Bucket {
    /// A client for `config`'s bucket and prefix (only its S3 settings are read). Makes no
    /// network call.
    pub async fn connect(config: &ArchiveConfig) -> Result<Self, String> {
        aws::check_connection("archive", &config.region, config.endpoint_url.as_deref())?;
        let sdk = aws::sdk_config(
            &config.region,
            config.endpoint_url.as_deref(),
            config.static_credentials,
        )
        .await;
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.endpoint_url.is_some())
            .interceptor(aws::call_metrics())
            .build();
        Ok(Self {
            client: Client::from_conf(s3),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    /// The client, for tests and tools that read objects back.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full object key of `key`: the prefix, then `key`.
    pub fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Stores `body` under `<prefix><key>`, replacing any object there; returns once S3
    /// stored it. The error is the SDK's, in words.
    pub async fn put(&self, key: &str, content_type: &str, body: Bytes) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    /// The object under the full key `object_key` (as [`S3Bucket::object_key`] made it);
    /// `None` when there is none.
    pub async fn get(&self, object_key: &str) -> Result<Option<Bytes>, String> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(DisplayErrorContext(&e).to_string()),
        };
        let body = out.body.collect().await.map_err(|e| e.to_string())?;
        Ok(Some(body.into_bytes()))
    }

    /// Deletes the object under the full key `object_key` (S3 answers the same whether or
    /// not there was one).
    pub async fn delete(&self, object_key: &str) -> Result<(), String> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Archive parts as S3 objects under `<prefix>raw/…`; the role needs only `s3:PutObject`
/// there (terraform/archive.tf).
#[derive(Debug, Clone)]
pub struct S3Archive {
    /// Where parts go.
    bucket: S3Bucket,
}

impl S3Archive {
    /// A client for `config`'s bucket. Makes no network call.
    pub async fn connect(config: &ArchiveConfig) -> Result<Self, String> {
        Ok(Self {
            bucket: S3Bucket::connect(config).await?,
        })
    }

    /// The client, for tests and tools that read the archive back.
    pub fn client(&self) -> &Client {
        self.bucket.client()
    }
}

#[async_trait]
impl ArchiveSink for S3Archive {
    async fn put_part(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        self.bucket
            .put(key, "application/x-ndjson", body)
            .await
            .map_err(ArchiveError::Unavailable)
    }

    fn describe(&self) -> String {
        self.bucket.describe()
    }
}
