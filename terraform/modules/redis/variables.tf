variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\" (also the replication group id)."
  type        = string
  validation {
    condition     = can(regex("^fleetwire-[a-z0-9]+$", var.name_prefix)) && length(var.name_prefix) <= 40
    error_message = "name_prefix must be \"fleetwire-<environment>\", at most 40 characters (replication group id limit)."
  }
}

variable "vpc_id" {
  description = "VPC of the replication group."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per AZ (at least two for Multi-AZ)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets in different AZs."
  }
}

variable "node_type" {
  description = "Cache node type, e.g. cache.t4g.small (1k vehicles) or cache.m7g.large (10k): docs/capacity-and-cost.md."
  type        = string
  default     = "cache.t4g.small"
  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "node_type must look like cache.<family>.<size>."
  }
}

variable "num_cache_clusters" {
  description = "Nodes in the group, a primary and its replicas across the AZs (Multi-AZ with automatic failover needs at least 2)."
  type        = number
  default     = 2
  validation {
    condition     = var.num_cache_clusters >= 2 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters must be 2 to 6 (Multi-AZ with automatic failover)."
  }
}

variable "transit_encryption" {
  description = "TLS in transit plus an AUTH token (rediss://). Turn off only in dev, and only while the image's Redis client has no TLS support."
  type        = bool
  default     = true
}

variable "engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "parameter_group_name" {
  description = "Parameter group (cluster mode disabled: fleetwire uses one primary endpoint)."
  type        = string
  default     = "default.redis7"
}

variable "snapshot_retention_days" {
  description = "Days of automatic snapshots (1-35). The fan-out keeps no durable data today; snapshots protect the replay log that comes next."
  type        = number
  default     = 1
  validation {
    condition     = var.snapshot_retention_days >= 1 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be 1 to 35."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance window (UTC), ddd:hh24:mi-ddd:hh24:mi."
  type        = string
  default     = "sun:03:00-sun:04:00"
}

variable "apply_immediately" {
  description = "Apply modifications at once instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key for encryption at rest and of the URL secret."
  type        = string
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 deletes at once; 7-30 otherwise)."
  type        = number
  default     = 7
  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or 7 to 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
