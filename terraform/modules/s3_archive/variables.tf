variable "bucket_name" {
  description = "Globally unique bucket name, e.g. fleetwire-<environment>-archive-<account id>."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lower-case letters, digits, dots and hyphens."
  }
}

variable "kms_key_arn" {
  description = "KMS key for server-side encryption."
  type        = string
}

variable "raw_infrequent_access_after_days" {
  description = "Days before raw/ objects move to Standard-IA (>= 30, an S3 rule)."
  type        = number
  default     = 30
  validation {
    condition     = var.raw_infrequent_access_after_days >= 30
    error_message = "raw_infrequent_access_after_days must be at least 30."
  }
}

variable "raw_glacier_after_days" {
  description = "Days before raw/ objects move to Glacier Instant Retrieval."
  type        = number
  default     = 90
}

variable "raw_expire_after_days" {
  description = "Days before raw/ objects are deleted."
  type        = number
  default     = 730
}

variable "dead_letter_expire_after_days" {
  description = "Days before large dead-letter payloads are deleted (match the dead_letters table TTL)."
  type        = number
  default     = 30
  validation {
    condition     = var.dead_letter_expire_after_days >= 1
    error_message = "dead_letter_expire_after_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy a non-empty bucket (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
