output "log_group_name" {
  description = "Task log group name."
  value       = aws_cloudwatch_log_group.tasks.name
}

output "log_group_arn" {
  description = "Task log group ARN."
  value       = aws_cloudwatch_log_group.tasks.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies (subscribe paging tools here)."
  value       = aws_sns_topic.alarms.arn
}
