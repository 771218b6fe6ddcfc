variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\"."
  type        = string
  validation {
    condition     = length(var.name_prefix) <= 28
    error_message = "name_prefix must be at most 28 characters (it becomes <prefix>-api, a 32-character LB name)."
  }
}

variable "vpc_id" {
  description = "VPC of the targets."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets for the ALB, one per AZ."
  type        = list(string)
  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids needs at least two subnets."
  }
}

variable "container_port" {
  description = "The tasks' public API port (port of config key http.listen)."
  type        = number
  default     = 8080
}

variable "health_check_port" {
  description = "The tasks' admin port (port of config key admin.listen), whose /readyz is the health check."
  type        = number
  default     = 9090
}

variable "certificate_arn" {
  description = "ACM certificate for hostname, in the same region (docs/deploy.md shows how to request one)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout. SSE streams must outlive it between keep-alives; at least 3600, at most 4000 (the ALB maximum)."
  type        = number
  default     = 3600
  validation {
    condition     = var.idle_timeout_seconds >= 3600 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be 3600 to 4000."
  }
}

variable "deregistration_delay_seconds" {
  description = "Seconds a draining task may finish in-flight requests. Keep it above http.shutdown_timeout_secs (20 in config/aws.toml)."
  type        = number
  default     = 30
  validation {
    condition     = var.deregistration_delay_seconds >= 20 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be 20 to 3600 (>= http.shutdown_timeout_secs)."
  }
}

variable "rate_limit_per_5_minutes" {
  description = "Requests per client IP per 5 minutes before WAF blocks that IP (ingest producers batch records, so this counts requests, not records)."
  type        = number
  default     = 6000
  validation {
    condition     = var.rate_limit_per_5_minutes >= 10 && var.rate_limit_per_5_minutes <= 2000000000
    error_message = "rate_limit_per_5_minutes must be 10 to 2,000,000,000 (WAF limits)."
  }
}

variable "allowed_cidrs" {
  description = "Source CIDRs allowed to reach the API."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must be IPv4 CIDRs."
  }
}

variable "access_logs_bucket" {
  description = "Existing S3 bucket (SSE-S3, ELB log-delivery policy) for ALB access logs; null disables them."
  type        = string
  default     = null
}

variable "waf_log_retention_days" {
  description = "Retention of the WAF log group, in days (a CloudWatch Logs retention value)."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "KMS key encrypting the WAF log group."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse deletion of the load balancer (production)."
  type        = bool
  default     = true
}

variable "hostname" {
  description = "DNS name of the API (the certificate must cover it)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.hostname))
    error_message = "hostname must be a lower-case DNS name."
  }
}

variable "route53_zone_id" {
  description = "Hosted zone in which to create the alias record for hostname; null to manage DNS elsewhere (CNAME to the output alb_dns_name)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
