# Variables every environment has (linked into each environment as common_variables.tf);
# environment-specific ones stay in the environment's variables.tf.

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
  description = "Run the Tesla mTLS vehicle listener (fill the three tesla secrets first)."
  type        = bool
  default     = false
}

variable "extra_environment" {
  description = "Further FLEETWIRE_<SECTION>__<KEY> settings."
  type        = map(string)
  default     = {}
}
