# dev: a small, disposable fleetwire environment: one shard per stream, on-demand tables,
# two tasks (one of them Spot), no deletion protection (terraform destroy removes it all).

module "fleetwire" {
  source = "../../stack"

  environment         = "dev"
  vpc_cidr            = var.vpc_cidr
  vehicle_hostname    = var.vehicle_hostname
  api_hostname        = var.api_hostname
  api_certificate_arn = var.api_certificate_arn
  route53_zone_id     = var.route53_zone_id
  image_tag           = var.image_tag
  alarm_emails        = var.alarm_emails

  task_cpu            = 1024
  task_memory         = 2048
  min_tasks           = 2
  max_tasks           = 4
  on_demand_base      = 1
  spot_percent        = 50
  # Provisioned with one shard per topic: 4 x $10.95/month, where on-demand would cost
  # 4 x $29.20 in stream-hours alone (docs/capacity-and-cost.md).
  kinesis_stream_mode  = "PROVISIONED"
  kinesis_shard_counts = { V = 1, alerts = 1, errors = 1, connectivity = 1 }
  redis_node_type     = "cache.t4g.small"
  redis_nodes         = 2
  redis_tls           = var.redis_tls
  log_retention_days  = 30

  deletion_protection   = false
  enable_tesla_listener = var.enable_tesla_listener
  extra_environment     = var.extra_environment

  tags = { Owner = var.owner }
}
