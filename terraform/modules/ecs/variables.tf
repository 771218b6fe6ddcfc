variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\" (cluster, task family; also redis.key_prefix)."
  type        = string
}

variable "image_repository_url" {
  description = "ECR repository URL of the fleetwire image (ecr module output repository_url)."
  type        = string
}

variable "image_tag" {
  description = "Image tag to run (immutable tags: a git commit id or a release version; never latest)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid Docker tag other than latest."
  }
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (Graviton, about 20% cheaper per vCPU-hour; the image must be built for it)."
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_cpu" {
  description = "Task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Task memory in MiB (must be a valid Fargate combination with task_cpu)."
  type        = number
  default     = 2048
  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880 && var.task_memory % 512 == 0
    error_message = "task_memory must be a multiple of 512 MiB between 512 and 122880."
  }
}

variable "container_uid" {
  description = "Numeric user the fleetwire container runs as (the Dockerfile's USER)."
  type        = number
  default     = 10001
  validation {
    condition     = var.container_uid > 0
    error_message = "container_uid must not be root (0)."
  }
}

variable "api_port" {
  description = "Public API port in the task (config http.listen)."
  type        = number
  default     = 8080
}

variable "admin_port" {
  description = "Admin port in the task (config admin.listen): health checks only, never routed."
  type        = number
  default     = 9090
}

variable "tesla_port" {
  description = "Tesla mTLS port in the task (config tesla.listen)."
  type        = number
  default     = 8443
}

variable "shutdown_limit_secs" {
  description = "fleetwire --shutdown-limit-secs: longest drain of acknowledged records at SIGTERM. With http.shutdown_timeout_secs (20) it must fit in stop_timeout_seconds."
  type        = number
  default     = 60
  validation {
    condition     = var.shutdown_limit_secs >= 5 && var.shutdown_limit_secs <= 90
    error_message = "shutdown_limit_secs must be 5 to 90 (Fargate kills the container at most 120 s after SIGTERM)."
  }
}

variable "stop_timeout_seconds" {
  description = "Seconds between SIGTERM and SIGKILL (Fargate maximum 120)."
  type        = number
  default     = 120
  validation {
    condition     = var.stop_timeout_seconds >= 30 && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds must be 30 to 120."
  }
}

variable "min_tasks" {
  description = "Minimum (and initial) number of tasks; 2 or more keeps the service up through a task or AZ loss."
  type        = number
  default     = 2
  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Maximum number of tasks autoscaling may run."
  type        = number
  default     = 6
}

variable "on_demand_base" {
  description = "Tasks always placed on regular FARGATE before the spot share applies."
  type        = number
  default     = 2
  validation {
    condition     = var.on_demand_base >= 0
    error_message = "on_demand_base must not be negative."
  }
}

variable "spot_percent" {
  description = "Share (0-90 %) of tasks above on_demand_base placed on FARGATE_SPOT. Spot tasks get a 2-minute warning (SIGTERM): fleetwire drains and hands its leases over."
  type        = number
  default     = 0
  validation {
    condition     = var.spot_percent >= 0 && var.spot_percent <= 90
    error_message = "spot_percent must be 0 to 90."
  }
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation of the service."
  type        = number
  default     = 60
  validation {
    condition     = var.cpu_target_percent >= 20 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be 20 to 90."
  }
}

variable "target_connections_per_task" {
  description = "Target vehicle connections (NLB flows) per task (docs/capacity-and-cost.md)."
  type        = number
  default     = 2500
  validation {
    condition     = var.target_connections_per_task >= 100
    error_message = "target_connections_per_task must be at least 100."
  }
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (egress to the interface endpoints)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "gateway_endpoint_prefix_list_ids" {
  description = "Prefix lists of the DynamoDB and S3 gateway endpoints."
  type        = list(string)
}

variable "allow_internet_egress" {
  description = "Allow HTTPS to the internet (needs the network module's NAT gateway)."
  type        = bool
  default     = false
}

variable "alb_security_group_id" {
  description = "Security group of the API ALB."
  type        = string
}

variable "nlb_security_group_id" {
  description = "Security group of the vehicle NLB."
  type        = string
}

variable "redis_security_group_id" {
  description = "Security group of the Redis nodes."
  type        = string
}

variable "api_target_group_arn" {
  description = "ALB target group for api_port."
  type        = string
}

variable "vehicle_target_group_arn" {
  description = "NLB target group for tesla_port."
  type        = string
}

variable "vehicle_load_balancer_arn_suffix" {
  description = "NLB ARN suffix (CloudWatch dimension) for the connections-per-task scaling metric."
  type        = string
}

variable "execution_role_arn" {
  description = "ECS task execution role."
  type        = string
}

variable "task_role_arn" {
  description = "Role fleetwire runs as."
  type        = string
}

variable "log_group_name" {
  description = "CloudWatch log group of the containers."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting ECS Exec sessions."
  type        = string
}

variable "kinesis_stream_name" {
  description = "The V stream (FLEETWIRE_KINESIS__STREAM_NAME)."
  type        = string
}

variable "kinesis_topic_stream_names" {
  description = "Stream name per Tesla topic (V, alerts, errors, connectivity), from the kinesis module."
  type        = map(string)
  validation {
    condition     = alltrue([for t in ["V", "alerts", "errors", "connectivity"] : contains(keys(var.kinesis_topic_stream_names), t)])
    error_message = "kinesis_topic_stream_names needs V, alerts, errors and connectivity."
  }
}

variable "pseudonym_key_secret_arn" {
  description = "Secret holding the VIN pseudonymization key (FLEETWIRE_SECURITY__PSEUDONYM_KEY, hex, >= 32 bytes)."
  type        = string
}

variable "archive_bucket_name" {
  description = "The raw archive's bucket (FLEETWIRE_ARCHIVE__BUCKET)."
  type        = string
}

variable "lease_table_name" {
  description = "The lease table (FLEETWIRE_DYNAMODB__LEASE_TABLE)."
  type        = string
}

variable "redis_url_secret_arn" {
  description = "Secret holding the rediss:// URL (FLEETWIRE_REDIS__URL)."
  type        = string
}

variable "enable_tesla_listener" {
  description = "Run the Tesla vehicle listener: set the [tesla] config variables and mount the TLS material (put the secret values first, docs/deploy.md)."
  type        = bool
  default     = false
}

variable "tesla_server_cert_secret_arn" {
  description = "Secret holding the PEM server certificate chain for the vehicle hostname."
  type        = string
}

variable "tesla_server_key_secret_arn" {
  description = "Secret holding the PEM private key of the server certificate."
  type        = string
}

variable "tesla_client_ca_secret_arn" {
  description = "Secret holding a PEM CA bundle that vehicle client certificates may chain to (your own CA; Tesla's is compiled in, see trust_tesla_vehicle_ca)."
  type        = string
}

variable "trust_tesla_vehicle_ca" {
  description = "Config key tesla.trust_tesla_vehicle_ca: also trust Tesla's vehicle CA bundle compiled into fleetwire."
  type        = bool
}

variable "extra_environment" {
  description = "Further FLEETWIRE_<SECTION>__<KEY> overrides (e.g. FLEETWIRE_CONSUMER__IDLE_POLL_MS). Each must be a real config key, or the service refuses to start."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : can(regex("^FLEETWIRE_[A-Z0-9_]+__[A-Z0-9_]+$", k))])
    error_message = "extra_environment keys must look like FLEETWIRE_<SECTION>__<KEY>."
  }
}

variable "enable_execute_command" {
  description = "Enable ECS Exec (operators reach the admin listener by port forwarding)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}

variable "admin_token_secret_arn" {
  description = "Secrets Manager secret with the platform-admin token (FLEETWIRE_ADMIN__TOKEN)."
  type        = string
}

variable "ticket_key_secret_arn" {
  description = "Secrets Manager secret with the stream-ticket key (FLEETWIRE_AUTH__TICKET_KEY)."
  type        = string
}

variable "auth_issuer" {
  description = "Token issuer (FLEETWIRE_AUTH__ISSUER)."
  type        = string
}

variable "auth_jwks_url" {
  description = "The issuer's JWKS, https (FLEETWIRE_AUTH__JWKS_URL)."
  type        = string
}

variable "auth_audiences" {
  description = "Accepted audiences / client ids (FLEETWIRE_AUTH__AUDIENCES)."
  type        = list(string)
  validation {
    condition     = length(var.auth_audiences) > 0
    error_message = "auth_audiences needs at least one client id."
  }
}
