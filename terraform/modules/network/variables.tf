variable "name_prefix" {
  description = "Prefix of every resource name, \"fleetwire-<environment>\"."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; /16 to /22. Split into 16 equal blocks: 0-1 public, 8-9 private."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 22
    error_message = "vpc_cidr must be an IPv4 CIDR from /16 to /22."
  }
}

variable "availability_zones" {
  description = "Zone names to choose the two AZs from (the first two available, sorted); null = <region>a, b, c."
  type        = list(string)
  default     = null
  validation {
    condition     = var.availability_zones == null ? true : length(var.availability_zones) >= 2
    error_message = "availability_zones must name at least two zones."
  }
}

variable "interface_endpoints" {
  description = "AWS services reached through interface endpoints (names after com.amazonaws.<region>.)."
  type        = list(string)
  default     = ["kinesis-streams", "ecr.api", "ecr.dkr", "logs", "secretsmanager", "kms", "ssmmessages"]
  validation {
    condition     = contains(var.interface_endpoints, "kinesis-streams")
    error_message = "kinesis-streams must stay an interface endpoint: it carries every record twice (put and get)."
  }
}

variable "enable_nat_gateway" {
  description = "Add one NAT gateway for internet egress from the private subnets. Not needed by the service as shipped."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log group."
  type        = string
}

variable "flow_log_traffic_type" {
  description = "Which flows to log: REJECT (default), ACCEPT or ALL."
  type        = string
  default     = "REJECT"
  validation {
    condition     = contains(["REJECT", "ACCEPT", "ALL"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be REJECT, ACCEPT or ALL."
  }
}

variable "flow_log_retention_days" {
  description = "Retention of the flow-log group, in days (a CloudWatch Logs retention value)."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, ... 365, ... 3653)."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
