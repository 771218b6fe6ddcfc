output "table_names" {
  description = "Physical table name per logical name."
  value       = { for k, t in aws_dynamodb_table.this : k => t.name }
}

output "table_arns" {
  description = "Table ARN per logical name."
  value       = { for k, t in aws_dynamodb_table.this : k => t.arn }
}

output "task_actions" {
  description = "DynamoDB actions (without the dynamodb: prefix) the service calls, per logical table name."
  value       = { for k, t in local.tables : k => t.task_actions }
}

output "lease_table_name" {
  description = "The lease table: the value of config key dynamodb.lease_table."
  value       = aws_dynamodb_table.this["leases"].name
}
