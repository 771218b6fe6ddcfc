# iam: the two roles of the fleetwire task, least privilege per resource.
#
# Execution role (used by the ECS agent before the container starts): pull the image from
# its ECR repository, write the task's log group, read the task's Secrets Manager secrets.
#
# Task role (used by fleetwire itself through the default credential chain,
# kinesis.static_credentials = false / dynamodb.static_credentials = false). It gets only
# the API calls the code makes, on the named resources:
#
#   Kinesis  (src/backends/kinesis/stream.rs)
#     every topic stream:        PutRecords (Ingestor, Tesla edge), DescribeStreamSummary (ping)
#     consumed topics (var):     ListShards, GetShardIterator, GetRecords (LeaseCoordinator,
#                                ShardConsumer)
#     CreateStream, SplitShard, MergeShards, DeleteStream are dev/test helpers
#     (kinesis.create_if_missing) and are not granted: terraform owns the streams.
#   DynamoDB (src/backends/dynamodb/lease_store.rs for the lease table; docs/data-model.md
#     for the others): per table exactly the actions in the dynamodb module's task_actions,
#     on the table and its indexes. CreateTable is not granted
#     (dynamodb.create_tables_if_missing = false in AWS).
#   KMS      the data key only through Kinesis, DynamoDB and S3 (kms:ViaService); the VIN
#            vault key directly, Encrypt and Decrypt only (src/vault/kms.rs wraps the vault's
#            data keys), and only with the encryption context naming a data-key item
#            (vin_vault_pk = "~key#<version>").
#   S3       the archive bucket: raw/ (Put, Get: src/backends/s3) and dead-letters/ (Put,
#            Get, Delete: large dead-letter payloads, src/backends/dynamodb/dead_letters.rs).
#   SSM      the ECS Exec channels and the session log, only when execute command is
#            enabled.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  consumed_stream_arns = [for t in var.consumed_topics : var.stream_arns[t]]
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- execution role -------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name_prefix}-execution"
  description        = "ECS agent for fleetwire tasks: image pull, logs, secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions.
  }
  statement {
    sid       = "PullFleetwireImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.log_group_arn}:*"]
  }
  statement {
    sid       = "ReadTaskSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.secret_arns
  }
  statement {
    sid       = "DecryptTaskSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.data_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "fleetwire-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- task role ------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${var.name_prefix}-task"
  description        = "fleetwire process: Kinesis, DynamoDB, S3 archive, KMS"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "KinesisProduce"
    actions   = ["kinesis:PutRecords", "kinesis:DescribeStreamSummary"]
    resources = values(var.stream_arns)
  }

  statement {
    sid       = "KinesisConsume"
    actions   = ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]
    resources = local.consumed_stream_arns
  }

  dynamic "statement" {
    for_each = var.task_actions
    content {
      sid       = "DynamoDb${replace(title(replace(statement.key, "_", " ")), " ", "")}"
      actions   = [for a in statement.value : "dynamodb:${a}"]
      resources = [var.table_arns[statement.key], "${var.table_arns[statement.key]}/index/*"]
    }
  }

  statement {
    sid       = "DataKeyThroughItsServices"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
    resources = [var.data_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "kinesis.${local.region}.amazonaws.com",
        "dynamodb.${local.region}.amazonaws.com",
        "s3.${local.region}.amazonaws.com",
      ]
    }
  }

  statement {
    sid       = "VinVaultDataKeys"
    actions   = ["kms:Encrypt", "kms:Decrypt"]
    resources = [var.vin_vault_key_arn]
    # The context src/vault/kms.rs sends (CONTEXT_KEY); a call without it is denied.
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:vin_vault_pk"
      values   = ["~key#*"]
    }
  }

  statement {
    sid       = "ArchiveObjects"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${var.archive_bucket_arn}/raw/*"]
  }

  # Dead-letter payloads over 64 KiB (src/backends/dynamodb/dead_letters.rs): written
  # before their item, read by inspect and replay, deleted with their letter.
  statement {
    sid       = "DeadLetterPayloads"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${var.archive_bucket_arn}/dead-letters/*"]
  }

  statement {
    sid       = "ArchiveList"
    actions   = ["s3:ListBucket"]
    resources = [var.archive_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["raw/*", "dead-letters/*"]
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid = "EcsExecChannels"
      actions = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      resources = ["*"] # ssmmessages has no resource-level permissions.
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionKey"
      actions   = ["kms:Decrypt"]
      resources = [var.data_key_arn]
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionLog"
      actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
      resources = ["${var.log_group_arn}:*"]
    }
  }

  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid       = "EcsExecFindLogGroup"
      actions   = ["logs:DescribeLogGroups"]
      resources = ["*"] # DescribeLogGroups has no resource-level permissions.
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "fleetwire-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
