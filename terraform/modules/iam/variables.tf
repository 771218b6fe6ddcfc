variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\"."
  type        = string
}

variable "stream_arns" {
  description = "Kinesis stream ARN per topic (kinesis module output stream_arns)."
  type        = map(string)
}

variable "consumed_topics" {
  description = "Topics whose streams fleetwire's shard consumer reads (today only V, config kinesis.stream_name)."
  type        = list(string)
  default     = ["V"]
  validation {
    condition     = length(var.consumed_topics) >= 1
    error_message = "consumed_topics must name at least the V topic."
  }
}

variable "table_arns" {
  description = "DynamoDB table ARN per logical name (dynamodb module output table_arns)."
  type        = map(string)
}

variable "task_actions" {
  description = "DynamoDB actions per logical table name (dynamodb module output task_actions)."
  type        = map(list(string))
}

variable "data_key_arn" {
  description = "The environment's data KMS key."
  type        = string
}

variable "vin_vault_key_arn" {
  description = "The VIN vault KMS key."
  type        = string
}

variable "archive_bucket_arn" {
  description = "ARN of the S3 archive bucket."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the image repository."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the task log group (without the trailing :*)."
  type        = string
}

variable "secret_arns" {
  description = "Secrets Manager secrets the task definition references (FLEETWIRE_REDIS__URL, Tesla TLS material)."
  type        = list(string)
}

variable "enable_execute_command" {
  description = "Allow ECS Exec (operators' access to the private admin listener)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
