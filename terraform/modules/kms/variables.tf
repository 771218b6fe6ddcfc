variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\"."
  type        = string
  validation {
    condition     = can(regex("^fleetwire-[a-z0-9]+$", var.name_prefix))
    error_message = "name_prefix must be \"fleetwire-<environment>\" in lower-case letters and digits."
  }
}

variable "deletion_window_in_days" {
  description = "Days a scheduled key deletion waits (7-30). Deleting the data key makes every table, stream and archive object unreadable."
  type        = number
  default     = 30
  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be 7 to 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
