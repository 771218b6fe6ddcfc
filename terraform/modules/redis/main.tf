# redis: the ElastiCache replication group behind fleetwire's fan-out (config section
# [redis], backends.fanout = "redis").
#
# - TLS in transit and an AUTH token: the client URL is rediss://:<token>@<primary>:6379/.
#   var.transit_encryption = false (no TLS, hence no AUTH: redis://<primary>:6379/) exists
#   only for experiments in a private subnet (both environments keep TLS)
#   (docs/deploy.md, "Before the first deployment"); the security group still admits the
#   tasks only.
#   The whole URL is stored in Secrets Manager and handed to the task as the environment
#   variable FLEETWIRE_REDIS__URL (config key redis.url), so the token never appears in the
#   task definition, the config file or a log line (RedisConfig redacts it).
# - Multi-AZ with automatic failover: a primary and one replica in the other AZ. The primary
#   endpoint follows a failover; fleetwire's subscription reconnects with backoff and
#   tells browsers to reset (docs/operations.md, "Redis fan-out").
# - Encrypted at rest with the environment's KMS key; daily snapshots.
#
# The token lives in the Terraform state (ElastiCache takes it as an argument): keep the
# state in an encrypted, access-controlled backend (docs/deploy.md).

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name_prefix
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "redis" {
  name        = "${var.name_prefix}-redis"
  description = "ElastiCache Redis: reachable from the fleetwire tasks only (rule added by the ecs module)"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name_prefix}-redis" })
}

# Letters and digits only: the token goes into a URL, and ElastiCache refuses some symbols.
resource "random_password" "auth_token" {
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV_AWS_30:Transit encryption is var.transit_encryption, true by default and in both environments; checkov cannot resolve the variable. false exists only for experiments inside a private subnet that admits the tasks only.
  #checkov:skip=CKV_AWS_31:The AUTH token comes with transit encryption (ElastiCache requires TLS for AUTH); same switch and same reason as CKV_AWS_30.
  replication_group_id = var.name_prefix
  description          = "fleetwire fan-out (${var.name_prefix})"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = 6379
  num_cache_clusters   = var.num_cache_clusters
  parameter_group_name = var.parameter_group_name

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  automatic_failover_enabled = true
  multi_az_enabled           = true

  transit_encryption_enabled = var.transit_encryption
  transit_encryption_mode    = var.transit_encryption ? "required" : null
  auth_token                 = var.transit_encryption ? random_password.auth_token.result : null
  auth_token_update_strategy = var.transit_encryption ? "ROTATE" : null
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn

  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  maintenance_window         = var.maintenance_window
  apply_immediately          = var.apply_immediately

  tags = var.tags
}

resource "aws_secretsmanager_secret" "url" {
  #checkov:skip=CKV2_AWS_57:The AUTH token is rotated with the two-step ElastiCache procedure in docs/deploy.md (ROTATE then SET), which a generic Secrets Manager rotation Lambda cannot drive without also updating the replication group.
  name                    = "${var.name_prefix}/redis-url"
  description             = "Value of FLEETWIRE_REDIS__URL (config redis.url): rediss://:<auth token>@<primary endpoint>:6379/"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  secret_string = (var.transit_encryption
    ? "rediss://:${random_password.auth_token.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/"
    : "redis://${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/"
  )
}
