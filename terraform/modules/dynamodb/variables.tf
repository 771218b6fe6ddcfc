variable "name_prefix" {
  description = "Table name prefix, \"fleetwire-<environment>\": tables are <name_prefix>-<logical name>."
  type        = string
  validation {
    condition     = can(regex("^fleetwire-[a-z0-9]+$", var.name_prefix))
    error_message = "name_prefix must be \"fleetwire-<environment>\" in lower-case letters and digits."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for server-side encryption of every table."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse DeleteTable on every table (set true in production)."
  type        = bool
  default     = true
}

variable "provisioned" {
  description = <<-EOT
    Tables to run in PROVISIONED mode with target-tracking autoscaling, keyed by logical
    name (history, vehicles, aggregates, ...). Only tables whose indexes are all KEYS_ONLY.
    read_min/read_max/write_min/write_max bound the autoscaled base capacity;
    index_capacity is the fixed read and write capacity of each of the table's indexes.
  EOT
  type = map(object({
    read_min       = number
    read_max       = number
    write_min      = number
    write_max      = number
    index_capacity = optional(number, 5)
  }))
  default = {}
  validation {
    condition = alltrue([
      for name, p in var.provisioned :
      contains(["leases", "vehicles", "history", "trips", "charging_sessions", "aggregates", "registry", "vin_vault", "dead_letters"], name)
      && p.read_min >= 1 && p.write_min >= 1 && p.read_max >= p.read_min && p.write_max >= p.write_min && p.index_capacity >= 1
    ])
    error_message = "provisioned: keys must be tables without ALL-projected indexes (not events or api_keys); capacities >= 1 and max >= min."
  }
}

variable "autoscaling_target_utilization" {
  description = "Target consumed/provisioned capacity in percent for provisioned tables (20-90)."
  type        = number
  default     = 70
  validation {
    condition     = var.autoscaling_target_utilization >= 20 && var.autoscaling_target_utilization <= 90
    error_message = "autoscaling_target_utilization must be 20 to 90."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
