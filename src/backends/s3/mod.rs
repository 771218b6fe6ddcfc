//! [`S3Archive`]: the archive port on Amazon S3 (AWS profile).
//!
//! Each part is one PutObject of the whole body under `<prefix><key>`; S3 writes objects
//! atomically, so a reader never sees a partial part, and the call returns only once the
//! object is stored (durable). With `archive.endpoint_url` set (an emulator such as
//! moto) requests use path-style addressing, as emulators on `127.0.0.1` have no
//! bucket subdomains. Credentials come from the default AWS chain (the task role in ECS)
//! unless `archive.static_credentials` is set; the role needs only `s3:PutObject` on the
//! bucket's `<prefix>raw/*` (terraform/archive.tf).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use fleetwire_actors::archive::ArchiveConfig;
use fleetwire_actors::ports::{ArchiveError, ArchiveSink};

use crate::backends::aws;

/// Archive parts as S3 objects.
#[derive(Debug, Clone)]
pub struct S3Archive {
    /// The S3 client (shared SDK settings: region, endpoint, timeouts).
    client: Client,
    /// The bucket (`archive.bucket`).
    bucket: String,
    /// Prepended to every key (`archive.prefix`), e.g. `fleetwire/`.
    prefix: String,
}

impl S3Archive {
    /// A client for `config`'s bucket. Makes no network call.
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
            .build();
        Ok(Self {
            client: Client::from_conf(s3),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    /// The client, for tests and tools that read the archive back.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl ArchiveSink for S3Archive {
    async fn put_part(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ArchiveError::Unavailable(DisplayErrorContext(&e).to_string()))
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}
