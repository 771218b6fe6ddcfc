output "security_group_id" {
  description = "Security group of the Redis nodes (the ecs module opens 6379 from the tasks)."
  value       = aws_security_group.redis.id
}

output "url_secret_arn" {
  description = "Secrets Manager secret holding the rediss:// URL (FLEETWIRE_REDIS__URL)."
  value       = aws_secretsmanager_secret.url.arn
}

output "replication_group_id" {
  description = "Replication group id (for alarms)."
  value       = aws_elasticache_replication_group.this.id
}

output "node_ids" {
  description = "Cache cluster ids of the nodes (<group id>-001, -002, ...), known at plan time, for per-node alarms."
  value       = [for i in range(var.num_cache_clusters) : format("%s-%03d", var.name_prefix, i + 1)]
}

output "primary_endpoint" {
  description = "Primary endpoint address."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}
