variable "name" {
  description = "Repository name, e.g. fleetwire-<environment>."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]{1,255}$", var.name))
    error_message = "name must be a valid ECR repository name (lower case)."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting the image layers."
  type        = string
}

variable "keep_images" {
  description = "Tagged images to keep (older ones expire); keep enough to roll back."
  type        = number
  default     = 30
  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5, to keep roll-back targets."
  }
}

variable "force_delete" {
  description = "Let terraform delete the repository with images in it (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
