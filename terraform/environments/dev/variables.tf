variable "redis_tls" {
  description = "TLS + AUTH on Redis (rediss://). Keep true; false only for experiments in private subnets."
  type        = bool
  default     = true
}
