# kinesis: one data stream per Tesla Fleet Telemetry topic, named like Tesla's dispatcher
# (`<namespace>_<topic>`): `<namespace>_V` carries vehicle data and is the stream fleetwire's
# consumer reads (config key kinesis.stream_name); `_alerts`, `_errors` and `_connectivity`
# receive the other topics from the Tesla listener.
#
# Capacity: ON_DEMAND needs no shard planning but costs more per GB at steady load;
# PROVISIONED is cheaper for a steady fleet (see docs/capacity-and-cost.md). Partition key =
# vehicle id, so one vehicle's records stay in order on one shard.
# Encrypted with the environment's customer-managed KMS key.

resource "aws_kinesis_stream" "topic" {
  for_each = toset(var.topics)

  name             = "${var.namespace}_${each.key}"
  shard_count      = var.stream_mode == "PROVISIONED" ? lookup(var.shard_counts, each.key, 1) : null
  retention_period = var.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  # Shard-level metrics feed the per-shard iterator-age view in the runbook; they cost
  # CloudWatch custom-metric fees per shard, so they are opt-in.
  shard_level_metrics = var.shard_level_metrics

  tags = merge(var.tags, { Topic = each.key })
}
