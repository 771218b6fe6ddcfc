//! [`KinesisStream`]: the port calls as Kinesis API calls, and admin helpers.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::{Blob, DateTime as AwsDateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, PutRecordsResultEntry, Record, Shard, ShardIteratorType, StreamMode,
    StreamModeDetails, StreamStatus,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use fleetwire_actors::ports::stream::MAX_GET_RECORDS_LIMIT;
use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardDescription, ShardId,
    ShardIterator, StartPosition, StreamError, StreamRecord,
};

use super::errors::{classify, entry_error};
use super::{KinesisConfig, KinesisError};
use fleetwire_actors::ports::stream::{check_put_entry as check_entry, check_put_request as check_request};

/// ListShards page size (the API's default and a tenth of its maximum of 10,000): one
/// page covers any stream we run, and a page stays a small response.
const DEFAULT_LIST_SHARDS_PAGE: i32 = 1000;
/// Pages `list_shards` follows before giving up; a server handing out tokens forever
/// would otherwise hang the caller.
const MAX_LIST_SHARDS_PAGES: usize = 10_000;
/// How long `connect` (with `create_if_missing`) and the resharding helpers wait for the
/// stream to become ACTIVE. AWS takes up to a few minutes to create a stream; kinesis-local
/// takes 10 ms as `scripts/emulators` starts it.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between DescribeStreamSummary polls while waiting for ACTIVE (AWS allows 20 of
/// these calls per second per account).
const ACTIVE_POLL: Duration = Duration::from_millis(100);
/// The Kinesis [`RecordStream`]: one SDK client and one stream. Cheap to share behind an
/// `Arc` (the client pools its connections); every method is one or a few Kinesis calls.
#[derive(Debug, Clone)]
pub struct KinesisStream {
    client: Client,
    stream_name: String,
    list_shards_page: i32,
}

impl KinesisStream {
    /// Builds the client from `config` and, with `create_if_missing`, makes sure the stream
    /// exists and is ACTIVE. Without it no call is made: a missing stream shows up at the
    /// first call (and in `ping`, hence `/readyz`), so a node can start before its stream.
    pub async fn connect(config: &KinesisConfig) -> Result<Self, KinesisError> {
        config.validate()?;
        let extra_ca = config
            .extra_ca_file
            .as_deref()
            .map(super::load_extra_ca)
            .transpose()?;
        let shared = crate::backends::aws::sdk_config_with_ca(
            &config.region,
            config.endpoint_url.as_deref(),
            config.static_credentials,
            extra_ca,
        )
        .await;
        let client = Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(&shared)
                .interceptor(crate::backends::aws::call_metrics())
                .build(),
        );
        let stream = Self::from_client(client, config.stream_name.clone());
        if let Some(shards) = config.create_if_missing {
            stream.create_if_missing(shards).await?;
        }
        Ok(stream)
    }

    /// Wraps an existing client (with whatever endpoint, credentials, retry and timeout
    /// settings it has). Makes no call.
    pub fn from_client(client: Client, stream_name: impl Into<String>) -> Self {
        Self {
            client,
            stream_name: stream_name.into(),
            list_shards_page: DEFAULT_LIST_SHARDS_PAGE,
        }
    }

    /// Sets the ListShards page size (1 to 10,000); tests use a tiny one to go through the
    /// paging.
    pub fn with_list_shards_page_size(mut self, page: u16) -> Self {
        self.list_shards_page = i32::from(page.clamp(1, 10_000));
        self
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The SDK client, for calls the port does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the stream (provisioned, `shards` shards) unless it exists, then waits until
    /// it is ACTIVE. Another node creating it at the same time is fine.
    pub async fn create_if_missing(&self, shards: u32) -> Result<(), KinesisError> {
        let shard_count = i32::try_from(shards).ok().filter(|n| *n > 0).ok_or_else(|| {
            KinesisError::InvalidConfig(format!("cannot create a stream with {shards} shards"))
        })?;
        match self.status().await {
            Ok(_) => {}
            Err(StreamError::NotFound(_)) => {
                let created = self
                    .client
                    .create_stream()
                    .stream_name(&self.stream_name)
                    .shard_count(shard_count)
                    .stream_mode_details(
                        StreamModeDetails::builder()
                            .stream_mode(StreamMode::Provisioned)
                            .build()
                            .map_err(|e| self.err(StreamError::InvalidArgument(e.to_string())))?,
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => {
                        tracing::info!(stream = %self.stream_name, shards, "Created the Kinesis stream.")
                    }
                    // Someone else created it between our describe and create.
                    Err(e) if e.code() == Some("ResourceInUseException") => {}
                    Err(e) => return Err(self.err(classify("CreateStream", e))),
                }
            }
            Err(e) => return Err(self.err(e)),
        }
        self.wait_until_active(ACTIVE_TIMEOUT).await
    }

    /// Polls until the stream is ACTIVE (UPDATING counts too: it serves reads and writes
    /// while resharding). Fails at once when it is DELETING.
    pub async fn wait_until_active(&self, timeout: Duration) -> Result<(), KinesisError> {
        let started = Instant::now();
        loop {
            let status = self.status().await.map_err(|e| self.err(e))?;
            match status {
                StreamStatus::Active | StreamStatus::Updating => return Ok(()),
                StreamStatus::Deleting => {
                    return Err(KinesisError::NotActive {
                        stream: self.stream_name.clone(),
                        status: status.as_str().to_owned(),
                        waited: started.elapsed(),
                    });
                }
                _ if started.elapsed() >= timeout => {
                    return Err(KinesisError::NotActive {
                        stream: self.stream_name.clone(),
                        status: status.as_str().to_owned(),
                        waited: started.elapsed(),
                    });
                }
                _ => tokio::time::sleep(ACTIVE_POLL).await,
            }
        }
    }

    /// Splits an open shard at `new_starting_hash_key` (the first hash key of the second
    /// child) and waits until the stream is ACTIVE again, so the next reshard can follow.
    pub async fn split_shard(
        &self,
        shard: &ShardId,
        new_starting_hash_key: u128,
    ) -> Result<(), KinesisError> {
        self.client
            .split_shard()
            .stream_name(&self.stream_name)
            .shard_to_split(&shard.0)
            .new_starting_hash_key(new_starting_hash_key.to_string())
            .send()
            .await
            .map_err(|e| self.err(classify("SplitShard", e)))?;
        self.wait_until_idle().await
    }

    /// Merges two open shards with adjacent hash-key ranges and waits until the stream is
    /// ACTIVE again.
    pub async fn merge_shards(&self, shard: &ShardId, adjacent: &ShardId) -> Result<(), KinesisError> {
        self.client
            .merge_shards()
            .stream_name(&self.stream_name)
            .shard_to_merge(&shard.0)
            .adjacent_shard_to_merge(&adjacent.0)
            .send()
            .await
            .map_err(|e| self.err(classify("MergeShards", e)))?;
        self.wait_until_idle().await
    }

    /// Deletes the stream (and any enhanced fan-out consumers). A stream that is already
    /// gone counts as deleted, so cleanup code can call it unconditionally.
    pub async fn delete_stream(&self) -> Result<(), KinesisError> {
        match self
            .client
            .delete_stream()
            .stream_name(&self.stream_name)
            .enforce_consumer_deletion(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("DeleteStream", e) {
                StreamError::NotFound(_) => Ok(()),
                other => Err(self.err(other)),
            },
        }
    }

    /// The stream's ARN (DescribeStreamSummary), which the consumer APIs take.
    pub async fn stream_arn(&self) -> Result<String, KinesisError> {
        self.summary()
            .await
            .map(|s| s.stream_arn)
            .map_err(|e| self.err(e))
    }

    /// The stream's status (DescribeStreamSummary).
    async fn status(&self) -> Result<StreamStatus, StreamError> {
        self.summary().await.map(|s| s.stream_status)
    }

    async fn summary(&self) -> Result<aws_sdk_kinesis::types::StreamDescriptionSummary, StreamError> {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream_name)
            .send()
            .await
            .map_err(|e| classify("DescribeStreamSummary", e))?;
        out.stream_description_summary
            .ok_or_else(|| StreamError::Unavailable("DescribeStreamSummary returned no summary".into()))
    }

    /// After a split or merge the stream is UPDATING until the children exist; unlike
    /// `wait_until_active`, wait for ACTIVE itself so a following reshard is accepted.
    async fn wait_until_idle(&self) -> Result<(), KinesisError> {
        let started = Instant::now();
        loop {
            let status = self.status().await.map_err(|e| self.err(e))?;
            if status == StreamStatus::Active {
                return Ok(());
            }
            if started.elapsed() >= ACTIVE_TIMEOUT {
                return Err(KinesisError::NotActive {
                    stream: self.stream_name.clone(),
                    status: status.as_str().to_owned(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
    }

    pub(super) fn err(&self, source: StreamError) -> KinesisError {
        KinesisError::Stream {
            stream: self.stream_name.clone(),
            source,
        }
    }
}

#[async_trait]
impl RecordStream for KinesisStream {
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_LIST_SHARDS_PAGES {
            let request = self.client.list_shards().max_results(self.list_shards_page);
            // AWS rule: a request with NextToken must not name the stream (the token
            // already does); naming both is an InvalidArgumentException.
            let request = match next_token.take() {
                Some(token) => request.next_token(token),
                None => request.stream_name(&self.stream_name),
            };
            let page = request.send().await.map_err(|e| classify("ListShards", e))?;
            for shard in page.shards.unwrap_or_default() {
                shards.push(describe_shard(shard)?);
            }
            match page.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => return Ok(shards),
            }
        }
        Err(StreamError::Unavailable(format!(
            "ListShards still returned a NextToken after {MAX_LIST_SHARDS_PAGES} pages"
        )))
    }

    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        check_request(&entries)?;
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
        let mut sent = Vec::with_capacity(entries.len());
        let mut request = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            if let Err(error) = check_entry(&entry) {
                outcomes[i] = Some(PutOutcome::Failed { error });
                continue;
            }
            let record = PutRecordsRequestEntry::builder()
                .partition_key(entry.partition_key)
                // Reuses the buffer when nobody else holds it.
                .data(Blob::new(Vec::<u8>::from(entry.data)))
                .build()
                .map_err(|e| StreamError::InvalidArgument(format!("PutRecords entry: {e}")))?;
            request.push(record);
            sent.push(i);
        }
        // PutRecords requires at least one entry; all-invalid (or empty) input needs no call.
        if !request.is_empty() {
            let out = self
                .client
                .put_records()
                .stream_name(&self.stream_name)
                .set_records(Some(request))
                .send()
                .await
                .map_err(|e| classify("PutRecords", e))?;
            // Kinesis answers one result per entry, in request order.
            let mut results = out.records.into_iter();
            for i in sent {
                outcomes[i] = Some(match results.next() {
                    Some(result) => put_outcome(result),
                    None => PutOutcome::Failed {
                        error: StreamError::Unavailable(
                            "PutRecords returned fewer results than entries".into(),
                        ),
                    },
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every entry was either failed locally or sent"))
            .collect())
    }

    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(&shard_id.0);
        let request = match position {
            StartPosition::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartPosition::AtSequenceNumber(seq) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq.0),
            StartPosition::AfterSequenceNumber(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.0),
        };
        let out = request
            .send()
            .await
            .map_err(|e| classify("GetShardIterator", e))?;
        out.shard_iterator
            .map(ShardIterator)
            .ok_or_else(|| StreamError::Unavailable("GetShardIterator returned no iterator".into()))
    }

    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError> {
        // Checked here so both backends reject the same limits (Kinesis: 1 to 10,000).
        let limit = i32::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_GET_RECORDS_LIMIT as i32).contains(l))
            .ok_or_else(|| {
                StreamError::InvalidArgument(format!(
                    "limit must be 1 to {MAX_GET_RECORDS_LIMIT}, got {limit}"
                ))
            })?;
        let out = self
            .client
            .get_records()
            .shard_iterator(&iterator.0)
            .limit(limit)
            .send()
            .await
            .map_err(|e| classify("GetRecords", e))?;
        let records = out.records.into_iter().map(stream_record).collect();
        let next_iterator = out
            .next_shard_iterator
            .filter(|it| !it.is_empty())
            .map(ShardIterator);
        // Kinesis sends ChildShards only with the response that ends a closed shard; the
        // port promises them exactly then, so ignore them otherwise.
        let child_shard_ids = match next_iterator {
            None => out
                .child_shards
                .unwrap_or_default()
                .into_iter()
                .map(|c| ShardId(c.shard_id))
                .collect(),
            Some(_) => Vec::new(),
        };
        Ok(GetRecordsOutput {
            records,
            next_iterator,
            millis_behind_latest: out
                .millis_behind_latest
                .map_or(0, |ms| u64::try_from(ms).unwrap_or(0)),
            child_shard_ids,
        })
    }

    async fn ping(&self) -> Result<(), StreamError> {
        // DescribeStreamSummary is the cheapest call that proves the endpoint, the
        // credentials and the stream; a stream that cannot take records yet is not ready.
        match self.status().await? {
            StreamStatus::Active | StreamStatus::Updating => Ok(()),
            other => Err(StreamError::Unavailable(format!(
                "stream {} is {}",
                self.stream_name,
                other.as_str()
            ))),
        }
    }
}

/// The port's view of one ListShards entry.
fn describe_shard(shard: Shard) -> Result<ShardDescription, StreamError> {
    let range = shard.hash_key_range.ok_or_else(|| {
        StreamError::Unavailable(format!("ListShards: {} has no hash-key range", shard.shard_id))
    })?;
    let parse = |key: &str| {
        key.parse::<u128>().map_err(|e| {
            StreamError::Unavailable(format!(
                "ListShards: hash key {key:?} of {} is not a 128-bit decimal: {e}",
                shard.shard_id
            ))
        })
    };
    Ok(ShardDescription {
        starting_hash_key: parse(&range.starting_hash_key)?,
        ending_hash_key: parse(&range.ending_hash_key)?,
        // A shard stops taking records when a split or merge closes it; Kinesis marks that
        // by giving its sequence-number range an end.
        closed: shard
            .sequence_number_range
            .is_some_and(|r| r.ending_sequence_number.is_some()),
        parent_shard_ids: shard
            .parent_shard_id
            .into_iter()
            .chain(shard.adjacent_parent_shard_id)
            .map(ShardId)
            .collect(),
        shard_id: ShardId(shard.shard_id),
    })
}

fn put_outcome(result: PutRecordsResultEntry) -> PutOutcome {
    match result {
        PutRecordsResultEntry {
            error_code: Some(code),
            error_message,
            ..
        } => PutOutcome::Failed {
            error: entry_error(&code, error_message.as_deref()),
        },
        PutRecordsResultEntry {
            shard_id: Some(shard_id),
            sequence_number: Some(seq),
            ..
        } => PutOutcome::Stored {
            shard_id: ShardId(shard_id),
            sequence_number: SequenceNumber(seq),
        },
        _ => PutOutcome::Failed {
            error: StreamError::Unavailable(
                "PutRecords result has neither an error nor a sequence number".into(),
            ),
        },
    }
}

pub(super) fn stream_record(record: Record) -> StreamRecord {
    StreamRecord {
        sequence_number: SequenceNumber(record.sequence_number),
        partition_key: record.partition_key.unwrap_or_default(),
        data: Bytes::from(record.data.into_inner()),
        // Always set by Kinesis; the read time is the closest stand-in if it ever is not.
        approximate_arrival: record
            .approximate_arrival_timestamp
            .and_then(to_chrono)
            .unwrap_or_else(Utc::now),
    }
}

fn to_chrono(t: AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>, end_seq: Option<&str>) -> Shard {
        Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(Into::into))
            .set_adjacent_parent_shard_id(adjacent.map(Into::into))
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("340282366920938463463374607431768211455")
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(
                SequenceNumberRange::builder()
                    .starting_sequence_number("1")
                    .set_ending_sequence_number(end_seq.map(Into::into))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn shard_description_carries_parents_range_and_closed() {
        let d = describe_shard(shard("shardId-2", Some("shardId-0"), Some("shardId-1"), None)).unwrap();
        assert_eq!(d.shard_id, ShardId("shardId-2".into()));
        assert_eq!(
            d.parent_shard_ids,
            [ShardId("shardId-0".into()), ShardId("shardId-1".into())]
        );
        assert_eq!((d.starting_hash_key, d.ending_hash_key), (0, u128::MAX));
        assert!(!d.closed);
        assert!(
            describe_shard(shard("shardId-0", None, None, Some("9")))
                .unwrap()
                .closed
        );
    }

    #[test]
    fn put_results_map_to_outcomes() {
        let stored = PutRecordsResultEntry::builder()
            .shard_id("shardId-000000000001")
            .sequence_number("42")
            .build();
        assert_eq!(
            put_outcome(stored),
            PutOutcome::Stored {
                shard_id: ShardId("shardId-000000000001".into()),
                sequence_number: SequenceNumber("42".into()),
            }
        );
        let throttled = PutRecordsResultEntry::builder()
            .error_code("ProvisionedThroughputExceededException")
            .error_message("Rate exceeded for shard")
            .build();
        assert!(matches!(
            put_outcome(throttled),
            PutOutcome::Failed {
                error: StreamError::Throttled(_)
            }
        ));
        let internal = PutRecordsResultEntry::builder()
            .error_code("InternalFailure")
            .build();
        assert!(matches!(
            put_outcome(internal),
            PutOutcome::Failed {
                error: StreamError::Unavailable(_)
            }
        ));
    }

    #[test]
    fn arrival_time_converts_with_millis() {
        let t = to_chrono(AwsDateTime::from_millis(1_700_000_000_123)).unwrap();
        assert_eq!(t.timestamp_millis(), 1_700_000_000_123);
    }
}
