variable "min_tasks" {
  description = "Minimum tasks (also the on-demand base)."
  type        = number
  default     = 4
}

variable "max_tasks" {
  description = "Maximum tasks."
  type        = number
  default     = 12
}

variable "kinesis_shard_counts" {
  description = "Provisioned shards per topic."
  type        = map(number)
  default     = { V = 13, alerts = 1, errors = 1, connectivity = 1 }
}

variable "dynamodb_provisioned" {
  description = "Provisioned capacity bounds per table (others on-demand)."
  type = map(object({
    read_min       = number
    read_max       = number
    write_min      = number
    write_max      = number
    index_capacity = optional(number, 5)
  }))
  default = {
    vehicles = { read_min = 50, read_max = 2000, write_min = 300, write_max = 12000, index_capacity = 10 }
    history  = { read_min = 50, read_max = 2000, write_min = 300, write_max = 6000 }
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.m7g.large"
}
