# dev: a small, disposable fleetwire environment. Everything on-demand, one shard's worth
# of traffic, two tasks, no deletion protection (terraform destroy removes it all).

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
  kinesis_stream_mode = "ON_DEMAND"
  redis_node_type     = "cache.t4g.small"
  redis_nodes         = 2
  redis_tls           = var.redis_tls
  log_retention_days  = 30

  deletion_protection   = false
  enable_tesla_listener = var.enable_tesla_listener
  extra_environment     = var.extra_environment

  tags = { Owner = var.owner }
}
