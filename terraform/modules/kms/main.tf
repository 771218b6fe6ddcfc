# kms: the customer-managed keys of one environment.
#
#   data      encrypts everything fleetwire stores or moves: Kinesis streams, DynamoDB tables,
#             the S3 archive, Redis at rest, Secrets Manager secrets, CloudWatch log groups,
#             the alarm SNS topic and the ECR repository.
#   vin_vault wraps the data keys of the VIN vault (docs/data-model.md, `vin_vault`). It is a
#             separate key so that access to clear VINs can be granted, audited (CloudTrail)
#             and revoked apart from access to telemetry.
#
# Both rotate yearly (AWS-managed rotation keeps old key material for decryption).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  root_arn   = "arn:${local.partition}:iam::${local.account_id}:root"
}

resource "aws_kms_key" "data" {
  description             = "${var.name_prefix}: data at rest (Kinesis, DynamoDB, S3, Redis, secrets, logs)"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.data.json
  tags                    = var.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name_prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}

resource "aws_kms_key" "vin_vault" {
  description             = "${var.name_prefix}: VIN vault data keys"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.vin_vault.json
  tags                    = var.tags
}

resource "aws_kms_alias" "vin_vault" {
  name          = "alias/${var.name_prefix}-vin-vault"
  target_key_id = aws_kms_key.vin_vault.key_id
}

# Key policies: the account administers the keys (IAM policies then grant use, see the iam
# module); AWS services that encrypt on their own behalf (CloudWatch Logs, CloudWatch alarms
# publishing to the encrypted SNS topic) are named explicitly, scoped to this account.
data "aws_iam_policy_document" "data" {
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: its Resource "*" means this key only, and the account-root statement is AWS's default that delegates use of the key to IAM policies.
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: its Resource "*" means this key only (a key policy cannot name other resources).
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: kms:* for the account root is AWS's default statement that keeps the key manageable; IAM policies grant the actual use.
  statement {
    sid       = "AccountAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.root_arn]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "vin_vault" {
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: its Resource "*" means this key only, and the account-root statement is AWS's default that delegates use of the key to IAM policies.
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: its Resource "*" means this key only (a key policy cannot name other resources).
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: kms:* for the account root is AWS's default statement that keeps the key manageable; IAM policies grant the actual use.
  statement {
    sid       = "AccountAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.root_arn]
    }
  }
}
