variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\" (load balancer names allow 32 characters)."
  type        = string
  validation {
    condition     = length(var.name_prefix) <= 23
    error_message = "name_prefix must be at most 23 characters (it becomes <prefix>-vehicles, a 32-character LB name)."
  }
}

variable "vpc_id" {
  description = "VPC of the targets."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets for the NLB, one per AZ."
  type        = list(string)
  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids needs at least two subnets."
  }
}

variable "container_port" {
  description = "The tasks' Tesla TLS port (port of config key tesla.listen)."
  type        = number
  default     = 8443
  validation {
    condition     = var.container_port > 1024 && var.container_port < 65536
    error_message = "container_port must be an unprivileged port (1025-65535): the container runs as a non-root user."
  }
}

variable "health_check_port" {
  description = "The tasks' admin port (port of config key admin.listen), whose /readyz is the health check."
  type        = number
  default     = 9090
}

variable "allowed_cidrs" {
  description = "Source CIDRs allowed to connect (vehicles connect from anywhere on cellular networks)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must be IPv4 CIDRs."
  }
}

variable "cross_zone" {
  description = "Cross-zone load balancing. Off by default: with it, about half of all vehicle bytes cross AZs and are billed as inter-AZ transfer (docs/capacity-and-cost.md); ECS already spreads tasks evenly over the AZs."
  type        = bool
  default     = false
}

variable "deregistration_delay_seconds" {
  description = "Seconds a draining task keeps its vehicle connections before the NLB closes them (vehicles then reconnect elsewhere)."
  type        = number
  default     = 30
  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be 0 to 3600."
  }
}

variable "deletion_protection" {
  description = "Refuse deletion of the load balancer (production)."
  type        = bool
  default     = true
}

variable "hostname" {
  description = "DNS name vehicles use (Tesla fleet_telemetry_config \"hostname\"); must match the server certificate."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.hostname))
    error_message = "hostname must be a lower-case DNS name."
  }
}

variable "route53_zone_id" {
  description = "Hosted zone in which to create the alias record for hostname; null to manage DNS elsewhere (CNAME hostname to the output nlb_dns_name)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
