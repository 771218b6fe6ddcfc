variable "environment" {
  description = "Environment name: lower-case letters and digits (dev, staging, prod). Every resource is named fleetwire-<environment>-..."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,12}$", var.environment))
    error_message = "environment must be 2-13 lower-case letters and digits, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the environment's VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "enable_nat_gateway" {
  description = "Give the tasks internet egress through a NAT gateway (not needed by the service as shipped)."
  type        = bool
  default     = false
}

variable "vehicle_hostname" {
  description = "DNS name vehicles connect to (Tesla fleet_telemetry_config hostname); the server certificate must name it."
  type        = string
}

variable "api_hostname" {
  description = "DNS name of the API and live page."
  type        = string
}

variable "api_certificate_arn" {
  description = "ACM certificate covering api_hostname, in the deployment region."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone for the two hostnames; null to create the DNS records elsewhere."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the fleetwire image in the environment's ECR repository (docs/deploy.md, step 2)."
  type        = string
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the pushed image."
  type        = string
  default     = "X86_64"
}

variable "task_cpu" {
  description = "CPU units per task (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Memory per task in MiB."
  type        = number
  default     = 2048
}

variable "api_port" {
  description = "Port of config key http.listen in the task."
  type        = number
  default     = 8080
}

variable "admin_port" {
  description = "Port of config key admin.listen in the task (private)."
  type        = number
  default     = 9090
}

variable "tesla_port" {
  description = "Port of config key tesla.listen in the task."
  type        = number
  default     = 8443
}

variable "trust_tesla_vehicle_ca" {
  description = "Config key tesla.trust_tesla_vehicle_ca: trust Tesla's vehicle CA bundle (compiled into fleetwire) besides the client-ca secret. Real Tesla vehicles need it."
  type        = bool
  default     = true
}

variable "min_tasks" {
  description = "Minimum number of tasks."
  type        = number
  default     = 2
}

variable "max_tasks" {
  description = "Maximum number of tasks."
  type        = number
  default     = 6
  validation {
    condition     = var.max_tasks >= 1 && var.max_tasks <= 200
    error_message = "max_tasks must be 1 to 200."
  }
}

variable "on_demand_base" {
  description = "Tasks always on regular FARGATE."
  type        = number
  default     = 2
}

variable "spot_percent" {
  description = "Share of tasks above on_demand_base on FARGATE_SPOT (0-90)."
  type        = number
  default     = 0
}

variable "target_connections_per_task" {
  description = "Autoscaling target: vehicle connections per task."
  type        = number
  default     = 2500
}

variable "kinesis_stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"
}

variable "kinesis_shard_counts" {
  description = "Shards per topic in PROVISIONED mode."
  type        = map(number)
  default     = { V = 2 }
}

variable "kinesis_retention_hours" {
  description = "Stream retention in hours."
  type        = number
  default     = 24
}

variable "dynamodb_provisioned" {
  description = "Tables run PROVISIONED with autoscaling (see the dynamodb module); others are on-demand."
  type = map(object({
    read_min       = number
    read_max       = number
    write_min      = number
    write_max      = number
    index_capacity = optional(number, 5)
  }))
  default = {}
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_tls" {
  description = "TLS and AUTH on Redis (see the redis module); keep true (false only for experiments in a private subnet)."
  type        = bool
  default     = true
}

variable "redis_nodes" {
  description = "Redis nodes (2+ for Multi-AZ failover)."
  type        = number
  default     = 2
}

variable "api_rate_limit_per_5_minutes" {
  description = "WAF: requests per client IP per 5 minutes."
  type        = number
  default     = 6000
}

variable "log_retention_days" {
  description = "Task log retention in days."
  type        = number
  default     = 365
}

variable "alarm_emails" {
  description = "E-mail addresses that receive alarms."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect tables and load balancers from deletion and refuse to delete non-empty buckets and repositories. false only for throwaway environments."
  type        = bool
  default     = true
}

variable "enable_tesla_listener" {
  description = "Run the Tesla mTLS vehicle listener (fill the three tesla secrets first)."
  type        = bool
  default     = false
}

variable "enable_execute_command" {
  description = "ECS Exec for operators (admin listener access)."
  type        = bool
  default     = true
}

variable "extra_environment" {
  description = "Further FLEETWIRE_<SECTION>__<KEY> settings for the tasks."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "create_user_pool" {
  description = "Create a Cognito user pool and app client for the API's users (modules/cognito). false: bring your own OIDC provider with auth_issuer, auth_jwks_url and auth_audiences."
  type        = bool
  default     = true
}

variable "auth_issuer" {
  description = "With create_user_pool = false: the token issuer (auth.issuer), e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>."
  type        = string
  default     = null
}

variable "auth_jwks_url" {
  description = "With create_user_pool = false: the issuer's JWKS (auth.jwks_url, https)."
  type        = string
  default     = null
}

variable "auth_audiences" {
  description = "With create_user_pool = false: accepted token audiences / client ids (auth.audiences)."
  type        = list(string)
  default     = []
}
