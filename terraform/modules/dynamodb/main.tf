# dynamodb: fleetwire's tables, exactly as docs/data-model.md describes them (a test,
# terraform/tests/test_consistency.py, compares the two and the lease table with the code).
#
# Every table is named "<name_prefix>-<logical name>", encrypted with the environment's KMS
# key, has point-in-time recovery, and deletion protection where asked. Billing is
# on-demand unless a table is listed in var.provisioned (steady high-volume tables are
# cheaper provisioned: docs/capacity-and-cost.md); provisioned tables autoscale their base
# capacity, and their KEYS_ONLY indexes (written only when an item is created) get a small
# fixed capacity.
#
# `task_actions` is the data-plane API the service calls on each table (from the access
# patterns in docs/data-model.md); the iam module grants exactly these, on the table and its
# indexes only.

locals {
  tables = {
    leases = {
      hash_key      = "leaseKey"
      hash_type     = "S"
      range_key     = null
      range_type    = null
      ttl_attribute = null
      indexes       = []
      task_actions  = ["DescribeTable", "Scan", "PutItem", "UpdateItem", "DeleteItem"]
    }
    vehicles = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = null
      range_type    = null
      ttl_attribute = null
      indexes = [
        { name = "by_tenant", hash_key = "tenant_id", hash_type = "S", range_key = "vehicle_id", range_type = "S", projection = "KEYS_ONLY" },
      ]
      task_actions = ["DescribeTable", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query"]
    }
    history = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "bucket"
      range_type    = "N"
      ttl_attribute = "expires_at"
      indexes       = []
      task_actions  = ["DescribeTable", "BatchWriteItem", "PutItem", "GetItem", "Query"]
    }
    events = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "sk"
      range_type    = "S"
      ttl_attribute = "expires_at"
      indexes = [
        { name = "by_tenant_time", hash_key = "tenant_shard", hash_type = "S", range_key = "sk", range_type = "S", projection = "ALL" },
      ]
      task_actions = ["DescribeTable", "PutItem", "BatchWriteItem", "Query"]
    }
    trips = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "sk"
      range_type    = "S"
      ttl_attribute = "expires_at"
      indexes       = []
      task_actions  = ["DescribeTable", "GetItem", "PutItem", "UpdateItem", "Query"]
    }
    charging_sessions = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "sk"
      range_type    = "S"
      ttl_attribute = "expires_at"
      indexes       = []
      task_actions  = ["DescribeTable", "GetItem", "PutItem", "UpdateItem", "Query"]
    }
    aggregates = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "hour"
      range_type    = "N"
      ttl_attribute = "expires_at"
      indexes       = []
      task_actions  = ["DescribeTable", "PutItem", "Query"]
    }
    registry = {
      hash_key      = "vehicle_id"
      hash_type     = "S"
      range_key     = null
      range_type    = null
      ttl_attribute = null
      indexes = [
        { name = "by_tenant", hash_key = "tenant_id", hash_type = "S", range_key = "vehicle_id", range_type = "S", projection = "KEYS_ONLY" },
      ]
      task_actions = ["DescribeTable", "GetItem", "BatchGetItem", "UpdateItem", "DeleteItem", "Query"]
    }
    api_keys = {
      hash_key      = "key_hash"
      hash_type     = "S"
      range_key     = null
      range_type    = null
      ttl_attribute = null
      indexes = [
        { name = "by_tenant", hash_key = "tenant_id", hash_type = "S", range_key = "key_id", range_type = "S", projection = "ALL" },
      ]
      # list = Query by_tenant + BatchGetItem (src/backends/dynamodb/api_keys.rs).
      task_actions = ["DescribeTable", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query"]
    }
    vin_vault = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = null
      range_type    = null
      ttl_attribute = null
      indexes       = []
      task_actions  = ["DescribeTable", "GetItem", "PutItem", "DeleteItem"]
    }
    dead_letters = {
      hash_key      = "pk"
      hash_type     = "S"
      range_key     = "sk"
      range_type    = "S"
      ttl_attribute = "expires_at"
      indexes       = []
      task_actions  = ["DescribeTable", "PutItem", "BatchWriteItem", "GetItem", "Query", "DeleteItem"]
    }
  }

  # Every attribute used as a key of the table or of one of its indexes, with its type.
  key_attributes = {
    for name, t in local.tables : name => merge(
      { (t.hash_key) = t.hash_type },
      t.range_key == null ? {} : { (t.range_key) = t.range_type },
      merge([for i in t.indexes : merge({ (i.hash_key) = i.hash_type }, i.range_key == null ? {} : { (i.range_key) = i.range_type })]...),
    )
  }

  provisioned_targets = merge([
    for name, p in var.provisioned : {
      "${name}/read"  = { table = name, dimension = "dynamodb:table:ReadCapacityUnits", metric = "DynamoDBReadCapacityUtilization", min = p.read_min, max = p.read_max }
      "${name}/write" = { table = name, dimension = "dynamodb:table:WriteCapacityUnits", metric = "DynamoDBWriteCapacityUtilization", min = p.write_min, max = p.write_max }
    }
  ]...)
}

resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV2_AWS_16:Tables are on-demand (they scale by themselves) unless listed in var.provisioned, and every provisioned table gets the aws_appautoscaling_target/policy pair below; checkov cannot resolve the per-table billing mode.
  for_each = local.tables

  name                        = "${var.name_prefix}-${each.key}"
  billing_mode                = contains(keys(var.provisioned), each.key) ? "PROVISIONED" : "PAY_PER_REQUEST"
  read_capacity               = contains(keys(var.provisioned), each.key) ? var.provisioned[each.key].read_min : null
  write_capacity              = contains(keys(var.provisioned), each.key) ? var.provisioned[each.key].write_min : null
  hash_key                    = each.value.hash_key
  range_key                   = each.value.range_key
  deletion_protection_enabled = var.deletion_protection

  dynamic "attribute" {
    for_each = local.key_attributes[each.key]
    content {
      name = attribute.key
      type = attribute.value
    }
  }

  dynamic "global_secondary_index" {
    for_each = each.value.indexes
    content {
      name            = global_secondary_index.value.name
      hash_key        = global_secondary_index.value.hash_key
      range_key       = global_secondary_index.value.range_key
      projection_type = global_secondary_index.value.projection
      read_capacity   = contains(keys(var.provisioned), each.key) ? var.provisioned[each.key].index_capacity : null
      write_capacity  = contains(keys(var.provisioned), each.key) ? var.provisioned[each.key].index_capacity : null
    }
  }

  dynamic "ttl" {
    for_each = each.value.ttl_attribute == null ? [] : [each.value.ttl_attribute]
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = merge(var.tags, { Table = each.key })

  lifecycle {
    # Autoscaling moves the base capacity of provisioned tables.
    ignore_changes = [read_capacity, write_capacity]

    precondition {
      condition     = !contains(keys(var.provisioned), each.key) || alltrue([for i in each.value.indexes : i.projection == "KEYS_ONLY"])
      error_message = "Only tables whose indexes are all KEYS_ONLY may be provisioned (their indexes are written only when an item is created); ${each.key} must stay on-demand."
    }
  }
}

resource "aws_appautoscaling_target" "table" {
  for_each = local.provisioned_targets

  service_namespace  = "dynamodb"
  resource_id        = "table/${aws_dynamodb_table.this[each.value.table].name}"
  scalable_dimension = each.value.dimension
  min_capacity       = each.value.min
  max_capacity       = each.value.max
}

resource "aws_appautoscaling_policy" "table" {
  for_each = local.provisioned_targets

  name               = "${var.name_prefix}-${replace(each.key, "/", "-")}-tracking"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.table[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.table[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.table[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = var.autoscaling_target_utilization
    predefined_metric_specification {
      predefined_metric_type = each.value.metric
    }
  }
}
