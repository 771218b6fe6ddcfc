output "data_key_arn" {
  description = "ARN of the data key (streams, tables, archive, Redis, secrets, logs, SNS, ECR)."
  value       = aws_kms_key.data.arn
}

output "vin_vault_key_arn" {
  description = "ARN of the VIN vault key."
  value       = aws_kms_key.vin_vault.arn
}
