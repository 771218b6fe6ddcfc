//! Per-call metrics of every AWS SDK client fleetwire builds: calls by service, operation
//! and outcome, and their duration (retries included, as the caller waits for them).
//!
//! The SDK's own clients know each operation's name; an interceptor reads it from the
//! call's config bag, so one piece of code covers every current and future operation of
//! Kinesis and DynamoDB. What it answers for operators: which calls a node makes and how
//! often (the write amplification of a record, in DynamoDB calls), and which of them are
//! slow or failing (a throttled table shows as `result="error"` on its operation).

use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use fleetwire_actors::telemetry::{AWS_CALL_SECONDS, AWS_CALLS_TOTAL};

/// Records [`AWS_CALLS_TOTAL`] and [`AWS_CALL_SECONDS`] for every operation of the client
/// it is installed on (see [`crate::backends::aws`]).
#[derive(Debug, Default)]
pub(crate) struct CallMetrics;

/// When the current call started; kept in the call's own config bag, so concurrent calls
/// on one client never see each other's.
#[derive(Debug, Clone, Copy)]
struct Started(Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallMetrics {
    fn name(&self) -> &'static str {
        "fleetwire_call_metrics"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("unknown".to_owned(), "unknown".to_owned()));
        let status = context.response().map(|r| r.status().as_u16());
        let result = match context.output_or_error() {
            Some(Ok(_)) => "ok",
            Some(Err(err)) => outcome(err, status),
            None => "error",
        };
        metrics::counter!(AWS_CALLS_TOTAL, "service" => service.clone(), "operation" => operation.clone(), "result" => result)
            .increment(1);
        if let Some(Started(at)) = cfg.load::<Started>() {
            metrics::histogram!(AWS_CALL_SECONDS, "service" => service, "operation" => operation)
                .record(at.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// A failed call's `result` label: what an operator would act on differently. AWS's JSON
/// protocols answer every modelled error with 400 — a failed condition (an expected
/// outcome of fenced and version-checked writes) as well as throttling — and faults of
/// the service with 5xx.
fn outcome<E>(err: &OrchestratorError<E>, status: Option<u16>) -> &'static str {
    if err.is_timeout_error() {
        "timeout"
    } else if err.is_connector_error() {
        "connection"
    } else {
        match status {
            Some(400..=499) => "client_error",
            Some(500..=599) => "server_error",
            _ => "error",
        }
    }
}
