# s3_archive: the raw-record archive (issue #5's archive sink): JSONL objects under
# raw/year=YYYY/month=MM/day=DD/hour=HH/part-<uuid>.jsonl, plus dead-letter payloads too
# large for a DynamoDB item under dead-letters/.
#
# Encrypted with the environment's KMS key (bucket key on, so S3 calls KMS once per bucket
# key rather than per object), versioned, public access blocked, TLS enforced. Lifecycle:
# raw/ moves to Standard-IA, then Glacier Instant Retrieval, then expires; dead-letters/
# expires with the letters (30 days, DEAD_LETTER_RETENTION), which also removes objects a
# rewrite or a failed delete left behind; old versions and incomplete multipart uploads are
# cleaned up.

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket per environment; the only writer is the task role, and CloudTrail data events (account-level) are the audit trail for reads.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage for data that is already a derived copy of the stream; enable it per compliance needs, not by default.
  #checkov:skip=CKV2_AWS_62:No consumer of object-created events exists; notifications would be configuration without a reader.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "archive" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.archive.arn,
      "${aws_s3_bucket.archive.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive.json
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "raw-records"
    status = "Enabled"
    filter {
      prefix = "raw/"
    }
    transition {
      days          = var.raw_infrequent_access_after_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.raw_glacier_after_days
      storage_class = "GLACIER_IR"
    }
    expiration {
      days = var.raw_expire_after_days
    }
  }

  rule {
    id     = "dead-letter-payloads"
    status = "Enabled"
    filter {
      prefix = "dead-letters/"
    }
    expiration {
      days = var.dead_letter_expire_after_days
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }
}
