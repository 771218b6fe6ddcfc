variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "us-east-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "owner" {
  description = "Team or person responsible (tag Owner)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (must not overlap networks it will be peered with)."
  type        = string
}

variable "vehicle_hostname" {
  description = "DNS name vehicles connect to; the Tesla server certificate must name it."
  type        = string
}

variable "api_hostname" {
  description = "DNS name of the API and live page."
  type        = string
}

variable "api_certificate_arn" {
  description = "ACM certificate ARN covering api_hostname (same region)."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone id for both hostnames, or null to create the CNAMEs yourself."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Image tag pushed to the environment's ECR repository."
  type        = string
}

variable "alarm_emails" {
  description = "Alarm e-mail recipients."
  type        = list(string)
  default     = []
}

variable "enable_tesla_listener" {
  description = "Configure the Tesla mTLS listener (needs an image with issue #9 and the three tesla secrets filled)."
  type        = bool
  default     = false
}

variable "extra_environment" {
  description = "Further FLEETWIRE_<SECTION>__<KEY> settings."
  type        = map(string)
  default     = {}
}

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
