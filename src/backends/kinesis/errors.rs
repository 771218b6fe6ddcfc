//! SDK errors and PutRecords per-entry error codes → [`StreamError`] (the table is in the
//! module docs of `kinesis`).
//!
//! The mapping goes by the error *code* (`ProvideErrorMetadata::code`), not by each
//! operation's generated error enum: the SDK derives those enum variants from the same
//! code, the codes are one vocabulary across operations, and PutRecords' per-entry
//! `ErrorCode` is a bare string anyway, so one table serves every call.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use fleetwire_actors::ports::StreamError;

/// Classifies a failed SDK call. `op` names the Kinesis operation for the message.
pub(super) fn classify<E>(op: &str, err: SdkError<E>) -> StreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = format!("{op}: {}", DisplayErrorContext(&err));
    match &err {
        // The request could not even be built: the same input will fail again.
        SdkError::ConstructionFailure(_) => StreamError::InvalidArgument(message),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StreamError::Unavailable(message)
        }
        SdkError::ServiceError(ctx) => from_code(ctx.err().code(), status, message),
        // `SdkError` is non-exhaustive; whatever a later SDK adds is not the caller's fault.
        _ => StreamError::Unavailable(message),
    }
}

/// Classifies an error of a SubscribeToShard event stream (after the subscription was
/// established). The event's exception type picks the variant but the SDK leaves the
/// metadata code empty, so this goes by variant: the same table as [`from_code`], and
/// anything else (a dropped connection, an unreadable frame) is `Unavailable`, since
/// subscribing again from the last position is the cure. The `bool` is whether it was
/// `ResourceInUseException` (another subscription of this consumer holds the shard).
pub(super) fn classify_subscription<R>(
    err: SdkError<SubscribeToShardEventStreamError, R>,
) -> (StreamError, bool)
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use SubscribeToShardEventStreamError as E;
    let message = format!("SubscribeToShard event stream: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::ServiceError(ctx) => match ctx.err() {
            E::ResourceNotFoundException(_) => (StreamError::NotFound(message), false),
            E::ResourceInUseException(_) => (StreamError::Unavailable(message), true),
            E::KmsThrottlingException(_) => (StreamError::Throttled(message), false),
            other => (from_code(other.code(), None, message), false),
        },
        _ => (StreamError::Unavailable(message), false),
    }
}

/// The port error for a Kinesis error code (`None` when the answer carried none, like
/// kinesis-local's bare HTTP 500) and the HTTP status, if any.
pub(super) fn from_code(code: Option<&str>, status: Option<u16>, message: String) -> StreamError {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => StreamError::Throttled(message),
        Some("ExpiredIteratorException") => StreamError::ExpiredIterator,
        Some("ResourceNotFoundException") => StreamError::NotFound(message),
        Some("InvalidArgumentException" | "ValidationException") => StreamError::InvalidArgument(message),
        // ResourceInUse (stream CREATING/UPDATING), InternalFailure, access and KMS errors,
        // codes we do not know: all can pass without a code change, so retry with backoff.
        Some(_) => StreamError::Unavailable(message),
        // A throttle without a parseable body is still a throttle.
        None if status == Some(429) => StreamError::Throttled(message),
        None => StreamError::Unavailable(message),
    }
}

/// The failure of one PutRecords entry from its `ErrorCode` and `ErrorMessage`.
pub(super) fn entry_error(code: &str, message: Option<&str>) -> StreamError {
    from_code(
        Some(code),
        None,
        format!("{code}: {}", message.unwrap_or("no message")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: &str) -> StreamError {
        from_code(Some(c), Some(400), "m".into())
    }

    #[test]
    fn codes_map_to_the_documented_port_errors() {
        assert!(matches!(
            code("ProvisionedThroughputExceededException"),
            StreamError::Throttled(_)
        ));
        assert!(matches!(
            code("LimitExceededException"),
            StreamError::Throttled(_)
        ));
        assert!(matches!(
            code("KMSThrottlingException"),
            StreamError::Throttled(_)
        ));
        assert_eq!(code("ExpiredIteratorException"), StreamError::ExpiredIterator);
        assert!(matches!(
            code("ResourceNotFoundException"),
            StreamError::NotFound(_)
        ));
        assert!(matches!(
            code("InvalidArgumentException"),
            StreamError::InvalidArgument(_)
        ));
        assert!(matches!(
            code("ValidationException"),
            StreamError::InvalidArgument(_)
        ));
        for retry in [
            "ResourceInUseException",
            "InternalFailure",
            "AccessDeniedException",
            "KMSNotFoundException",
            "SomethingNew",
        ] {
            assert!(matches!(code(retry), StreamError::Unavailable(_)), "{retry}");
        }
        assert!(matches!(
            from_code(None, Some(500), "m".into()),
            StreamError::Unavailable(_)
        ));
        assert!(matches!(
            from_code(None, Some(429), "m".into()),
            StreamError::Throttled(_)
        ));
    }

    #[test]
    fn entry_errors_are_retryable_exactly_for_throttles_and_internal_failures() {
        let t = entry_error("ProvisionedThroughputExceededException", Some("Rate exceeded"));
        assert!(matches!(&t, StreamError::Throttled(m) if m.contains("Rate exceeded")));
        assert!(matches!(
            entry_error("InternalFailure", None),
            StreamError::Unavailable(_)
        ));
        assert!(t.is_retryable());
    }
}
