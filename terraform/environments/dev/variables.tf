variable "redis_tls" {
  description = "TLS + AUTH on Redis. false until the fleetwire image's Redis client supports TLS (docs/deploy.md)."
  type        = bool
  default     = false
}
