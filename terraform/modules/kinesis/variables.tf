variable "namespace" {
  description = "Stream name prefix (Tesla's dispatcher namespace): streams are <namespace>_<topic>."
  type        = string
  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{1,100}$", var.namespace))
    error_message = "namespace must be 1-100 characters of a-z, A-Z, 0-9, _ . - (Kinesis stream name rules)."
  }
}

variable "topics" {
  description = "Tesla Fleet Telemetry topics, one stream each. V must be among them (fleetwire consumes it)."
  type        = list(string)
  default     = ["V", "alerts", "errors", "connectivity"]
  validation {
    condition     = contains(var.topics, "V") && alltrue([for t in var.topics : contains(["V", "alerts", "errors", "connectivity"], t)])
    error_message = "topics must include V and contain only V, alerts, errors, connectivity."
  }
}

variable "stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"
  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_counts" {
  description = "Shards per topic with stream_mode = PROVISIONED (missing topics get 1). Size V at >= vehicles x Hz / 800 (1,000 records/s per shard, 20% headroom)."
  type        = map(number)
  default     = { V = 2 }
  validation {
    condition     = alltrue([for n in values(var.shard_counts) : n >= 1 && n <= 500 && floor(n) == n])
    error_message = "shard_counts values must be whole numbers from 1 to 500."
  }
}

variable "retention_hours" {
  description = "Record retention in hours (24-8760). It bounds how long the consumer may be down or behind without losing acknowledged records; beyond 24 h it costs extra."
  type        = number
  default     = 24
  validation {
    condition     = var.retention_hours >= 24 && var.retention_hours <= 8760
    error_message = "retention_hours must be 24 to 8760."
  }
}

variable "shard_level_metrics" {
  description = "Enhanced shard-level CloudWatch metrics to enable (e.g. IteratorAgeMilliseconds)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key encrypting the streams."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
