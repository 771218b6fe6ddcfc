# stack: one complete fleetwire environment, composed from ../modules. The environments
# (../environments/dev, ../environments/prod) call this with their settings, so the wiring
# between modules exists once and dev and prod cannot drift apart in structure.
#
#   vehicles --443/TCP--> vehicle_ingress (NLB) --8443--> ecs tasks <--8080-- api_ingress (ALB, WAF) <-- browsers, API
#                                                           |  \
#                          kinesis (<ns>_V, _alerts, ...) <-+   +--> redis (fan-out, TLS + AUTH)
#                          dynamodb (docs/data-model.md)   <-+   +--> s3_archive
#   network: VPC, private subnets, endpoints; kms: keys; iam: roles; cloudwatch: logs, alarms

data "aws_caller_identity" "current" {}

locals {
  name_prefix = "fleetwire-${var.environment}"
  tags = merge(var.tags, {
    Application = "fleetwire"
    Environment = var.environment
  })
}

module "kms" {
  source      = "../modules/kms"
  name_prefix = local.name_prefix
  tags        = local.tags
}

module "network" {
  source             = "../modules/network"
  name_prefix        = local.name_prefix
  vpc_cidr           = var.vpc_cidr
  enable_nat_gateway = var.enable_nat_gateway
  kms_key_arn        = module.kms.data_key_arn
  tags               = local.tags
}

module "ecr" {
  source       = "../modules/ecr"
  name         = local.name_prefix
  kms_key_arn  = module.kms.data_key_arn
  force_delete = !var.deletion_protection
  tags         = local.tags
}

module "kinesis" {
  source          = "../modules/kinesis"
  namespace       = local.name_prefix
  stream_mode     = var.kinesis_stream_mode
  shard_counts    = var.kinesis_shard_counts
  retention_hours = var.kinesis_retention_hours
  kms_key_arn     = module.kms.data_key_arn
  tags            = local.tags
}

module "dynamodb" {
  source              = "../modules/dynamodb"
  name_prefix         = local.name_prefix
  kms_key_arn         = module.kms.data_key_arn
  deletion_protection = var.deletion_protection
  provisioned         = var.dynamodb_provisioned
  tags                = local.tags
}

module "redis" {
  source             = "../modules/redis"
  name_prefix        = local.name_prefix
  vpc_id             = module.network.vpc_id
  subnet_ids         = module.network.private_subnet_ids
  node_type          = var.redis_node_type
  num_cache_clusters = var.redis_nodes
  transit_encryption = var.redis_tls
  kms_key_arn        = module.kms.data_key_arn
  tags               = local.tags
}

module "s3_archive" {
  source        = "../modules/s3_archive"
  bucket_name   = "${local.name_prefix}-archive-${data.aws_caller_identity.current.account_id}"
  kms_key_arn   = module.kms.data_key_arn
  force_destroy = !var.deletion_protection
  tags          = local.tags
}

module "vehicle_ingress" {
  source              = "../modules/vehicle_ingress"
  name_prefix         = local.name_prefix
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  container_port      = var.tesla_port
  health_check_port   = var.admin_port
  hostname            = var.vehicle_hostname
  route53_zone_id     = var.route53_zone_id
  deletion_protection = var.deletion_protection
  tags                = local.tags
}

module "api_ingress" {
  source                   = "../modules/api_ingress"
  name_prefix              = local.name_prefix
  vpc_id                   = module.network.vpc_id
  public_subnet_ids        = module.network.public_subnet_ids
  container_port           = var.api_port
  health_check_port        = var.admin_port
  certificate_arn          = var.api_certificate_arn
  hostname                 = var.api_hostname
  route53_zone_id          = var.route53_zone_id
  rate_limit_per_5_minutes = var.api_rate_limit_per_5_minutes
  kms_key_arn              = module.kms.data_key_arn
  deletion_protection      = var.deletion_protection
  tags                     = local.tags
}

# Tesla listener TLS material. Terraform creates the secrets but never their values, so no
# private key passes through the Terraform state: docs/deploy.md puts the PEM files in with
# `aws secretsmanager put-secret-value`.
resource "aws_secretsmanager_secret" "tesla" {
  #checkov:skip=CKV2_AWS_57:These hold a TLS certificate, its key and a CA bundle; they rotate when the certificate is renewed (docs/deploy.md, "Rotate certificates and keys"), not on a Lambda schedule.
  for_each                = toset(["server-cert", "server-key", "client-ca"])
  name                    = "${local.name_prefix}/tesla/${each.key}"
  description             = "Tesla listener ${each.key} (PEM), written to /etc/fleetwire/tls by the init container"
  kms_key_id              = module.kms.data_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

# VIN pseudonymization key (security.pseudonym_key: >= 32 bytes as hex). Like the TLS
# material, terraform creates the secret but never its value (docs/deploy.md).
resource "aws_secretsmanager_secret" "pseudonym_key" {
  #checkov:skip=CKV2_AWS_57:Rotating this key changes every vehicle id; it is rotated deliberately with a new key version (docs/deploy.md), never on a Lambda schedule.
  name                    = "${local.name_prefix}/security/pseudonym-key"
  description             = "HMAC key that turns VINs into vehicle ids (FLEETWIRE_SECURITY__PSEUDONYM_KEY)"
  kms_key_id              = module.kms.data_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

# Platform-admin token (admin.token: /admin/* and /metrics) and stream-ticket key
# (auth.ticket_key, the same on every task). Terraform creates the secrets, never their
# values: docs/deploy.md puts them in with `aws secretsmanager put-secret-value`.
resource "aws_secretsmanager_secret" "auth" {
  #checkov:skip=CKV2_AWS_57:Rotated by an operator (docs/operations.md, "Platform-admin credential" and "Stream tickets"): a new admin token must reach the scrapers first, so no Lambda rotation.
  for_each                = toset(["admin-token", "ticket-key"])
  name                    = "${local.name_prefix}/auth/${each.key}"
  description             = each.key == "admin-token" ? "Platform-admin bearer token (FLEETWIRE_ADMIN__TOKEN, >= 32 characters)" : "Stream-ticket HMAC key (FLEETWIRE_AUTH__TICKET_KEY, hex, >= 32 bytes)"
  kms_key_id              = module.kms.data_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

# Who the API's users are: a Cognito user pool made here, or an existing OIDC provider.
module "cognito" {
  source              = "../modules/cognito"
  count               = var.create_user_pool ? 1 : 0
  name_prefix         = local.name_prefix
  deletion_protection = var.deletion_protection
  tags                = local.tags
}

locals {
  auth_issuer    = var.create_user_pool ? module.cognito[0].issuer : var.auth_issuer
  auth_jwks_url  = var.create_user_pool ? module.cognito[0].jwks_url : var.auth_jwks_url
  auth_audiences = var.create_user_pool ? [module.cognito[0].client_id] : var.auth_audiences
}

module "cloudwatch" {
  source                           = "../modules/cloudwatch"
  name_prefix                      = local.name_prefix
  kms_key_arn                      = module.kms.data_key_arn
  log_retention_days               = var.log_retention_days
  alarm_emails                     = var.alarm_emails
  vehicle_stream_name              = module.kinesis.vehicle_data_stream_name
  dead_letters_table_name          = module.dynamodb.table_names["dead_letters"]
  table_names                      = module.dynamodb.table_names
  redis_node_ids                   = module.redis.node_ids
  api_load_balancer_arn_suffix     = module.api_ingress.load_balancer_arn_suffix
  api_target_group_arn_suffix      = module.api_ingress.target_group_arn_suffix
  vehicle_load_balancer_arn_suffix = module.vehicle_ingress.load_balancer_arn_suffix
  vehicle_target_group_arn_suffix  = module.vehicle_ingress.target_group_arn_suffix
  tags                             = local.tags
}

module "iam" {
  source                 = "../modules/iam"
  name_prefix            = local.name_prefix
  stream_arns            = module.kinesis.stream_arns
  table_arns             = module.dynamodb.table_arns
  task_actions           = module.dynamodb.task_actions
  data_key_arn           = module.kms.data_key_arn
  vin_vault_key_arn      = module.kms.vin_vault_key_arn
  archive_bucket_arn     = module.s3_archive.bucket_arn
  ecr_repository_arn     = module.ecr.repository_arn
  log_group_arn          = module.cloudwatch.log_group_arn
  enable_execute_command = var.enable_execute_command
  secret_arns = concat(
    [module.redis.url_secret_arn, aws_secretsmanager_secret.pseudonym_key.arn],
    [for s in aws_secretsmanager_secret.auth : s.arn],
    var.enable_tesla_listener ? [for s in aws_secretsmanager_secret.tesla : s.arn] : [],
  )
  tags = local.tags
}

module "ecs" {
  source                           = "../modules/ecs"
  name_prefix                      = local.name_prefix
  image_repository_url             = module.ecr.repository_url
  image_tag                        = var.image_tag
  cpu_architecture                 = var.cpu_architecture
  task_cpu                         = var.task_cpu
  task_memory                      = var.task_memory
  api_port                         = var.api_port
  admin_port                       = var.admin_port
  tesla_port                       = var.tesla_port
  trust_tesla_vehicle_ca           = var.trust_tesla_vehicle_ca
  min_tasks                        = var.min_tasks
  max_tasks                        = var.max_tasks
  on_demand_base                   = var.on_demand_base
  spot_percent                     = var.spot_percent
  target_connections_per_task      = var.target_connections_per_task
  vpc_id                           = module.network.vpc_id
  vpc_cidr                         = module.network.vpc_cidr
  private_subnet_ids               = module.network.private_subnet_ids
  gateway_endpoint_prefix_list_ids = module.network.gateway_endpoint_prefix_list_ids
  allow_internet_egress            = var.enable_nat_gateway
  alb_security_group_id            = module.api_ingress.security_group_id
  nlb_security_group_id            = module.vehicle_ingress.security_group_id
  redis_security_group_id          = module.redis.security_group_id
  api_target_group_arn             = module.api_ingress.target_group_arn
  vehicle_target_group_arn         = module.vehicle_ingress.target_group_arn
  vehicle_load_balancer_arn_suffix = module.vehicle_ingress.load_balancer_arn_suffix
  execution_role_arn               = module.iam.execution_role_arn
  task_role_arn                    = module.iam.task_role_arn
  log_group_name                   = module.cloudwatch.log_group_name
  kms_key_arn                      = module.kms.data_key_arn
  kinesis_stream_name              = module.kinesis.vehicle_data_stream_name
  kinesis_topic_stream_names       = module.kinesis.stream_names
  pseudonym_key_secret_arn         = aws_secretsmanager_secret.pseudonym_key.arn
  admin_token_secret_arn           = aws_secretsmanager_secret.auth["admin-token"].arn
  ticket_key_secret_arn            = aws_secretsmanager_secret.auth["ticket-key"].arn
  auth_issuer                      = local.auth_issuer
  auth_jwks_url                    = local.auth_jwks_url
  auth_audiences                   = local.auth_audiences
  lease_table_name                 = module.dynamodb.lease_table_name
  archive_bucket_name              = module.s3_archive.bucket_name
  redis_url_secret_arn             = module.redis.url_secret_arn
  enable_tesla_listener            = var.enable_tesla_listener
  tesla_server_cert_secret_arn     = aws_secretsmanager_secret.tesla["server-cert"].arn
  tesla_server_key_secret_arn      = aws_secretsmanager_secret.tesla["server-key"].arn
  tesla_client_ca_secret_arn       = aws_secretsmanager_secret.tesla["client-ca"].arn
  extra_environment                = var.extra_environment
  enable_execute_command           = var.enable_execute_command
  tags                             = local.tags
}
