# cloudwatch: the task log group, the alarm topic and one alarm per failure an operator
# must act on. Every alarm's description names its runbook, docs/runbooks/<alarm>.md
# (what it means, how to confirm, how to fix); a test keeps alarms and runbooks paired.
#
#   kinesis-iterator-age  the consumer is more than 30 s behind the V stream
#   dead-letters-growing  records keep landing in the dead_letters table
#   api-5xx               the API answers 5xx to more than 1 % of requests
#   dynamodb-throttles    a table throttles reads or writes (one alarm per table)
#   redis-down            no client connection on any Redis node, or no metrics from them
#   unhealthy-tasks       a load balancer sees an unhealthy fleetwire task

locals {
  runbook = "docs/runbooks"
  actions = [aws_sns_topic.alarms.arn]
  # Metrics fed by fleetwire's log lines (metric filters), one namespace per environment.
  metric_namespace = "fleetwire/${var.name_prefix}"
}

resource "aws_cloudwatch_log_group" "tasks" {
  name              = "/ecs/${var.name_prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.key
}

resource "aws_cloudwatch_metric_alarm" "kinesis_iterator_age" {
  alarm_name          = "${var.name_prefix}-kinesis-iterator-age"
  alarm_description   = "The shard consumer is more than 30 s behind stream ${var.vehicle_stream_name}. Runbook: ${local.runbook}/kinesis-iterator-age.md"
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = var.vehicle_stream_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.iterator_age_threshold_ms
  # No GetRecords at all (no consumer running) is as bad as a slow one.
  treat_missing_data = "breaching"
  alarm_actions      = local.actions
  ok_actions         = local.actions
  tags               = var.tags
}

# fleetwire_dead_letters_stored_total in CloudWatch: every dead-letter store logs
# `Dead letters stored.` with `letters` (count) and `reason` once per write (JSON logs,
# config/aws.toml). Counting letters, not table writes, keeps replays and deletes (which
# also consume write units) out of the alarm.
resource "aws_cloudwatch_log_metric_filter" "dead_letters_stored" {
  name           = "${var.name_prefix}-dead-letters-stored"
  log_group_name = aws_cloudwatch_log_group.tasks.name
  pattern        = "{ $.message = \"Dead letters stored.\" }"
  metric_transformation {
    name          = "DeadLettersStored"
    namespace     = local.metric_namespace
    value         = "$.letters"
    default_value = 0
    unit          = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters_growing" {
  alarm_name          = "${var.name_prefix}-dead-letters-growing"
  alarm_description   = "Records keep going to ${var.dead_letters_table_name} (letters stored in 3 consecutive 5-minute periods). Runbook: ${local.runbook}/dead-letters-growing.md"
  namespace           = local.metric_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.dead_letters_stored.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dead_letters_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name_prefix}-api-5xx"
  alarm_description   = "More than ${var.api_5xx_percent_threshold} % of API requests answered 5xx (by fleetwire or by the ALB) for 5 minutes. Runbook: ${local.runbook}/api-5xx.md"
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_percent_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / FILL(requests, 1)"
    label       = "5xx percent"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      target5xx = "HTTPCode_Target_5XX_Count"
      elb5xx    = "HTTPCode_ELB_5XX_Count"
      requests  = "RequestCount"
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = metric_query.value
        dimensions  = { LoadBalancer = var.api_load_balancer_arn_suffix }
        stat        = "Sum"
        period      = 60
      }
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dynamodb_throttles" {
  for_each = var.table_names

  alarm_name          = "${var.name_prefix}-dynamodb-throttles-${each.key}"
  alarm_description   = "Table ${each.value} throttled reads or writes in 2 of the last 3 5-minute periods. Runbook: ${local.runbook}/dynamodb-throttles.md"
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "throttles"
    expression  = "FILL(reads, 0) + FILL(writes, 0)"
    label       = "Throttle events"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      reads  = "ReadThrottleEvents"
      writes = "WriteThrottleEvents"
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/DynamoDB"
        metric_name = metric_query.value
        dimensions  = { TableName = each.value }
        stat        = "Sum"
        period      = 300
      }
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "redis_down" {
  alarm_name          = "${var.name_prefix}-redis-down"
  alarm_description   = "No client is connected to any Redis node, or the nodes report no metrics, for 3 minutes: live updates between nodes have stopped. Runbook: ${local.runbook}/redis-down.md"
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "connections"
    expression  = "SUM([${join(", ", [for i, _ in var.redis_node_ids : "node${i}"])}])"
    label       = "Client connections on all nodes"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = var.redis_node_ids
    content {
      id = "node${metric_query.key}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "CurrConnections"
        dimensions  = { CacheClusterId = metric_query.value }
        stat        = "Minimum"
        period      = 60
      }
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_tasks" {
  alarm_name          = "${var.name_prefix}-unhealthy-tasks"
  alarm_description   = "A load balancer has seen an unhealthy fleetwire task (/readyz failing) for 3 minutes. Runbook: ${local.runbook}/unhealthy-tasks.md"
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "unhealthy"
    expression  = "MAX([FILL(api, 0), FILL(vehicles, 0)])"
    label       = "Unhealthy targets (max of API and vehicle target groups)"
    return_data = true
  }

  metric_query {
    id = "api"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "UnHealthyHostCount"
      dimensions = {
        LoadBalancer = var.api_load_balancer_arn_suffix
        TargetGroup  = var.api_target_group_arn_suffix
      }
      stat   = "Maximum"
      period = 60
    }
  }

  metric_query {
    id = "vehicles"
    metric {
      namespace   = "AWS/NetworkELB"
      metric_name = "UnHealthyHostCount"
      dimensions = {
        LoadBalancer = var.vehicle_load_balancer_arn_suffix
        TargetGroup  = var.vehicle_target_group_arn_suffix
      }
      stat   = "Maximum"
      period = 60
    }
  }

  tags = var.tags
}
