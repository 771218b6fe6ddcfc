# prod: sized for about 10,000 vehicles at 1 Hz (docs/capacity-and-cost.md): provisioned
# Kinesis shards and provisioned DynamoDB capacity for the steady high-volume tables,
# regular FARGATE for the base and a Spot share above it, deletion protection everywhere.

module "fleetwire" {
  source = "../../stack"

  environment         = "prod"
  vpc_cidr            = var.vpc_cidr
  vehicle_hostname    = var.vehicle_hostname
  api_hostname        = var.api_hostname
  api_certificate_arn = var.api_certificate_arn
  route53_zone_id     = var.route53_zone_id
  image_tag           = var.image_tag
  alarm_emails        = var.alarm_emails

  task_cpu                    = 1024
  task_memory                 = 2048
  min_tasks                   = var.min_tasks
  max_tasks                   = var.max_tasks
  on_demand_base              = var.min_tasks
  spot_percent                = 50
  target_connections_per_task = 2500

  kinesis_stream_mode  = "PROVISIONED"
  kinesis_shard_counts = var.kinesis_shard_counts

  dynamodb_provisioned = var.dynamodb_provisioned

  redis_node_type    = var.redis_node_type
  redis_nodes        = 2
  redis_tls          = true
  log_retention_days = 365

  deletion_protection   = true
  enable_tesla_listener = var.enable_tesla_listener
  extra_environment     = var.extra_environment

  tags = { Owner = var.owner }
}
