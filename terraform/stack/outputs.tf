output "vehicle_hostname" {
  description = "Tesla fleet_telemetry_config \"hostname\" (port 443)."
  value       = module.vehicle_ingress.hostname
}

output "vehicle_port" {
  description = "Tesla fleet_telemetry_config \"port\"."
  value       = 443
}

output "vehicle_nlb_dns_name" {
  description = "Point vehicle_hostname here (CNAME) when DNS is not in Route 53."
  value       = module.vehicle_ingress.nlb_dns_name
}

output "api_url" {
  description = "Base URL of the API, SSE stream and live page."
  value       = module.api_ingress.api_url
}

output "api_alb_dns_name" {
  description = "Point api_hostname here (CNAME) when DNS is not in Route 53."
  value       = module.api_ingress.alb_dns_name
}

output "ecr_repository_url" {
  description = "Push the fleetwire image here."
  value       = module.ecr.repository_url
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.ecs.cluster_name
}

output "service_name" {
  description = "ECS service."
  value       = module.ecs.service_name
}

output "stream_names" {
  description = "Kinesis stream per topic."
  value       = module.kinesis.stream_names
}

output "table_names" {
  description = "DynamoDB table per logical name."
  value       = module.dynamodb.table_names
}

output "archive_bucket" {
  description = "S3 archive bucket."
  value       = module.s3_archive.bucket_name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.cloudwatch.alarm_topic_arn
}

output "tesla_secret_arns" {
  description = "Secrets to fill with the Tesla listener's PEM files (server-cert, server-key, client-ca)."
  value       = { for k, s in aws_secretsmanager_secret.tesla : k => s.arn }
}

output "user_pool_id" {
  description = "The Cognito user pool of the API's users (null with create_user_pool = false)."
  value       = var.create_user_pool ? module.cognito[0].user_pool_id : null
}

output "auth_secret_arns" {
  description = "Secrets to fill before the first deploy: admin-token, ticket-key (docs/deploy.md)."
  value       = { for k, s in aws_secretsmanager_secret.auth : k => s.arn }
}
