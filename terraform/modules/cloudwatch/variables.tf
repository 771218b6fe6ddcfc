variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\"."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the log group and the alarm topic."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the task log group, in days (a CloudWatch Logs retention value). Logs never carry payloads or VINs."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, ... 365, ... 3653)."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "vehicle_stream_name" {
  description = "The V stream the consumer reads."
  type        = string
}

variable "iterator_age_threshold_ms" {
  description = "Consumer lag that raises kinesis-iterator-age, in milliseconds."
  type        = number
  default     = 30000
  validation {
    condition     = var.iterator_age_threshold_ms >= 1000
    error_message = "iterator_age_threshold_ms must be at least 1000."
  }
}

variable "dead_letters_table_name" {
  description = "The dead_letters table."
  type        = string
}

variable "dead_letters_threshold" {
  description = "Dead letters stored per 5 minutes above which the period counts (0: any dead letter)."
  type        = number
  default     = 0
}

variable "api_5xx_percent_threshold" {
  description = "Percentage of API requests answered 5xx that raises api-5xx."
  type        = number
  default     = 1
  validation {
    condition     = var.api_5xx_percent_threshold > 0 && var.api_5xx_percent_threshold <= 100
    error_message = "api_5xx_percent_threshold must be in (0, 100]."
  }
}

variable "table_names" {
  description = "Table names per logical name (one throttle alarm each)."
  type        = map(string)
}

variable "redis_node_ids" {
  description = "Cache cluster ids of the Redis nodes."
  type        = list(string)
  validation {
    condition     = length(var.redis_node_ids) >= 1 && length(var.redis_node_ids) <= 9
    error_message = "redis_node_ids must list 1 to 9 nodes."
  }
}

variable "api_load_balancer_arn_suffix" {
  description = "ALB ARN suffix (CloudWatch dimension)."
  type        = string
}

variable "api_target_group_arn_suffix" {
  description = "ALB target group ARN suffix."
  type        = string
}

variable "vehicle_load_balancer_arn_suffix" {
  description = "NLB ARN suffix."
  type        = string
}

variable "vehicle_target_group_arn_suffix" {
  description = "NLB target group ARN suffix."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
