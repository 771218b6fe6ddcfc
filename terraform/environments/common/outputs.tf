output "vehicle_hostname" {
  description = "Tesla fleet_telemetry_config hostname."
  value       = module.fleetwire.vehicle_hostname
}

output "vehicle_port" {
  description = "Tesla fleet_telemetry_config port."
  value       = module.fleetwire.vehicle_port
}

output "vehicle_nlb_dns_name" {
  description = "CNAME target for vehicle_hostname."
  value       = module.fleetwire.vehicle_nlb_dns_name
}

output "api_url" {
  description = "API, SSE and live page."
  value       = module.fleetwire.api_url
}

output "api_alb_dns_name" {
  description = "CNAME target for api_hostname."
  value       = module.fleetwire.api_alb_dns_name
}

output "ecr_repository_url" {
  description = "docker push target."
  value       = module.fleetwire.ecr_repository_url
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.fleetwire.cluster_name
}

output "service_name" {
  description = "ECS service."
  value       = module.fleetwire.service_name
}

output "stream_names" {
  description = "Kinesis streams."
  value       = module.fleetwire.stream_names
}

output "table_names" {
  description = "DynamoDB tables."
  value       = module.fleetwire.table_names
}

output "archive_bucket" {
  description = "S3 archive bucket."
  value       = module.fleetwire.archive_bucket
}

output "alarm_topic_arn" {
  description = "Alarm SNS topic."
  value       = module.fleetwire.alarm_topic_arn
}

output "tesla_secret_arns" {
  description = "Secrets for the Tesla listener's PEM files."
  value       = module.fleetwire.tesla_secret_arns
}
