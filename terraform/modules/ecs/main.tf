# ecs: the fleetwire service on Fargate.
#
# Configuration reaches the process the way src/config.rs reads it: the image carries
# config/aws.toml at /etc/fleetwire/aws.toml (the profile: backends, log format, shutdown
# timeout) and this task definition adds FLEETWIRE_<SECTION>__<KEY> environment variables
# for what depends on the environment (stream and table names, region, ports). Secrets come
# from Secrets Manager as environment variables (FLEETWIRE_REDIS__URL, the pseudonym key, the
# platform-admin token, the stream-ticket key), so they appear in
# neither the task definition nor the image. terraform/tests/test_consistency.py checks that
# every variable name below is a real config key and that ports match the load balancers,
# the Dockerfile and config/aws.toml.
#
# Tesla listener (config section [tesla], docs/protocol.md): on with
# enable_tesla_listener = true. Its certificate, key and client CA bundle are PEM files:
# Secrets Manager values are exposed as environment variables, so the short-lived "init"
# container (the same image, run as root) writes them to a task-local volume, owned by the
# fleetwire user and readable only by it, which the fleetwire container mounts read-only at
# /etc/fleetwire/tls. The same init container hands the data volume to the fleetwire user.
#
# Scaling: FARGATE with an optional FARGATE_SPOT share; target tracking on average CPU and,
# when the vehicle NLB is attached, on vehicle connections per task (NLB ActiveFlowCount /
# running tasks, metric math: no custom metric publisher is needed).

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.region

  tls_dir          = "/etc/fleetwire/tls"
  container_name   = "fleetwire"
  image            = "${var.image_repository_url}:${var.image_tag}"

  # FLEETWIRE_<SECTION>__<KEY> -> value. Keys must be literal (the consistency test reads them).
  environment = {
    FLEETWIRE_HTTP__LISTEN          = "0.0.0.0:${var.api_port}"
    FLEETWIRE_ADMIN__LISTEN         = "0.0.0.0:${var.admin_port}"
    FLEETWIRE_KINESIS__STREAM_NAME  = var.kinesis_stream_name
    FLEETWIRE_KINESIS__REGION       = local.region
    FLEETWIRE_DYNAMODB__REGION      = local.region
    FLEETWIRE_DYNAMODB__LEASE_TABLE = var.lease_table_name
    # The other tables are <table_prefix><logical name>, as terraform/modules/dynamodb names them.
    FLEETWIRE_DYNAMODB__TABLE_PREFIX = "${var.name_prefix}-"
    FLEETWIRE_REDIS__KEY_PREFIX     = var.name_prefix
    # The other Tesla topics' streams (written by the vehicle listener).
    FLEETWIRE_KINESIS__ALERTS_STREAM_NAME       = var.kinesis_topic_stream_names["alerts"]
    FLEETWIRE_KINESIS__ERRORS_STREAM_NAME       = var.kinesis_topic_stream_names["errors"]
    FLEETWIRE_KINESIS__CONNECTIVITY_STREAM_NAME = var.kinesis_topic_stream_names["connectivity"]
    # Who may call the API (docs/operations.md, "Authentication").
    FLEETWIRE_AUTH__ISSUER    = var.auth_issuer
    FLEETWIRE_AUTH__JWKS_URL  = var.auth_jwks_url
    FLEETWIRE_AUTH__AUDIENCES = local.auth_audiences_json
    # The raw archive's bucket ([archive] in config/aws.toml; keys raw/..., docs/data-model.md),
    # also the home of large dead-letter payloads (dynamodb.dead_letter_payloads =
    # "archive_bucket" in config/aws.toml; keys dead-letters/...).
    FLEETWIRE_ARCHIVE__BUCKET = var.archive_bucket_name
    FLEETWIRE_ARCHIVE__REGION = local.region
    # The KMS key that wraps the VIN vault's data keys (vault.wrapper = "kms" in
    # config/aws.toml; the alias terraform/modules/kms creates).
    FLEETWIRE_VAULT__KMS__KEY_ID = "alias/${var.name_prefix}-vin-vault"
    FLEETWIRE_VAULT__KMS__REGION = local.region
  }

  # A TOML array, which the config loader reads from an environment variable.
  auth_audiences_json = jsonencode(var.auth_audiences)

  # Set only with enable_tesla_listener.
  tesla_environment = {
    FLEETWIRE_TESLA__ENABLED                = "true"
    FLEETWIRE_TESLA__LISTEN                 = "0.0.0.0:${var.tesla_port}"
    FLEETWIRE_TESLA__SERVER_CERT_FILE       = "${local.tls_dir}/server.crt"
    FLEETWIRE_TESLA__SERVER_KEY_FILE        = "${local.tls_dir}/server.key"
    FLEETWIRE_TESLA__CLIENT_CA_FILES        = "[\"${local.tls_dir}/client-ca.pem\"]"
    FLEETWIRE_TESLA__TRUST_TESLA_VEHICLE_CA = tostring(var.trust_tesla_vehicle_ca)
  }

  secrets = {
    FLEETWIRE_REDIS__URL              = var.redis_url_secret_arn
    FLEETWIRE_SECURITY__PSEUDONYM_KEY = var.pseudonym_key_secret_arn
    FLEETWIRE_ADMIN__TOKEN            = var.admin_token_secret_arn
    FLEETWIRE_AUTH__TICKET_KEY        = var.ticket_key_secret_arn
  }

  # Not config: read by the init container only.
  tesla_secrets = {
    TESLA_SERVER_CERT_PEM = var.tesla_server_cert_secret_arn
    TESLA_SERVER_KEY_PEM  = var.tesla_server_key_secret_arn
    TESLA_CLIENT_CA_PEM   = var.tesla_client_ca_secret_arn
  }

  all_environment = merge(local.environment, var.enable_tesla_listener ? local.tesla_environment : {}, var.extra_environment)

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = var.log_group_name
      awslogs-region        = local.region
      awslogs-stream-prefix = "fleetwire"
    }
  }

  fleetwire_container = {
    name      = local.container_name
    image     = local.image
    essential = true
    user      = "${var.container_uid}:${var.container_uid}"
    # The image's entrypoint is `fleetwire serve --config /etc/fleetwire/aws.toml`.
    command                = ["--shutdown-limit-secs", tostring(var.shutdown_limit_secs)]
    readonlyRootFilesystem = true
    stopTimeout            = var.stop_timeout_seconds
    portMappings = [
      { name = "api", containerPort = var.api_port, protocol = "tcp" },
      { name = "admin", containerPort = var.admin_port, protocol = "tcp" },
      { name = "tesla", containerPort = var.tesla_port, protocol = "tcp" },
    ]
    environment = [for k in sort(keys(local.all_environment)) : { name = k, value = local.all_environment[k] }]
    secrets     = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
    mountPoints = concat(
      [
        { sourceVolume = "data", containerPath = "/var/lib/fleetwire", readOnly = false },
      ],
      var.enable_tesla_listener ? [{ sourceVolume = "tls", containerPath = local.tls_dir, readOnly = true }] : [],
    )
    dependsOn = [{ containerName = "init", condition = "SUCCESS" }]
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/fleetwire-healthcheck"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    ulimits          = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    logConfiguration = local.log_configuration
  }

  # The init container prepares the task-local volumes as root, then exits: Fargate bind
  # mounts are created writable by root only, and fleetwire runs as container_uid.
  init_commands = concat(
    ["chown ${var.container_uid}:${var.container_uid} /data", "chmod 0750 /data"],
    var.enable_tesla_listener ? [
      "umask 077",
      "printf '%s\\n' \"$TESLA_SERVER_CERT_PEM\" > /tls/server.crt",
      "printf '%s\\n' \"$TESLA_SERVER_KEY_PEM\" > /tls/server.key",
      "printf '%s\\n' \"$TESLA_CLIENT_CA_PEM\" > /tls/client-ca.pem",
      "chown ${var.container_uid}:${var.container_uid} /tls/server.crt /tls/server.key /tls/client-ca.pem",
      "chmod 0400 /tls/server.crt /tls/server.key /tls/client-ca.pem",
    ] : [],
  )

  init_container = {
    name                   = "init"
    image                  = local.image
    essential              = false
    user                   = "0:0"
    entryPoint             = ["/bin/sh", "-c"]
    command                = [join(" && ", local.init_commands)]
    readonlyRootFilesystem = true
    secrets                = var.enable_tesla_listener ? [for k in sort(keys(local.tesla_secrets)) : { name = k, valueFrom = local.tesla_secrets[k] }] : []
    mountPoints = concat(
      [{ sourceVolume = "data", containerPath = "/data", readOnly = false }],
      var.enable_tesla_listener ? [{ sourceVolume = "tls", containerPath = "/tls", readOnly = false }] : [],
    )
    logConfiguration = local.log_configuration
  }

  containers = [local.init_container, local.fleetwire_container]
}

resource "aws_ecs_cluster" "this" {
  name = var.name_prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    # ECS Exec sessions (operators reaching the admin listener) are encrypted with the
    # environment's key and their transcripts logged to the task log group.
    execute_command_configuration {
      kms_key_id = var.kms_key_arn
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_log_group_name     = var.log_group_name
        cloud_watch_encryption_enabled = true
      }
    }
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name_prefix
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_cpu)
  memory                   = tostring(var.task_memory)
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn
  container_definitions    = jsonencode(local.containers)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task-local volumes (Fargate ephemeral storage): the embedded data directory
  # (embedded.data_dir in config/aws.toml, until vehicle state moves to DynamoDB) and the
  # TLS files. The root filesystem itself is read-only.
  volume {
    name = "data"
  }
  volume {
    name = "tls"
  }

  tags = var.tags
}

# --- network access -------------------------------------------------------------------

resource "aws_security_group" "tasks" {
  name        = "${var.name_prefix}-tasks"
  description = "fleetwire tasks: API from the ALB, Tesla TLS from the NLB, admin only for health checks"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name_prefix}-tasks" })
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Public API (http.listen) from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  referenced_security_group_id = var.alb_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "tesla_from_nlb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Vehicle mTLS (tesla.listen) from the NLB"
  ip_protocol                  = "tcp"
  from_port                    = var.tesla_port
  to_port                      = var.tesla_port
  referenced_security_group_id = var.nlb_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "admin_health_checks" {
  for_each = {
    alb = var.alb_security_group_id
    nlb = var.nlb_security_group_id
  }
  security_group_id            = aws_security_group.tasks.id
  description                  = "Admin listener, /readyz health checks from the ${each.key} only"
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "https_in_vpc" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the interface endpoints (Kinesis, ECR, Logs, Secrets Manager, KMS, SSM)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_vpc_security_group_egress_rule" "https_gateway_endpoints" {
  for_each          = toset(var.gateway_endpoint_prefix_list_ids)
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the DynamoDB and S3 gateway endpoints"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.key
}

resource "aws_vpc_security_group_egress_rule" "https_internet" {
  count             = var.allow_internet_egress ? 1 : 0
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the internet through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "redis" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Redis (TLS) for the fan-out"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = var.redis_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = var.redis_security_group_id
  description                  = "Redis (TLS) from the fleetwire tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  for_each                     = toset([tostring(var.api_port), tostring(var.admin_port)])
  security_group_id            = var.alb_security_group_id
  description                  = "ALB to the tasks (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_tasks" {
  for_each                     = toset([tostring(var.tesla_port), tostring(var.admin_port)])
  security_group_id            = var.nlb_security_group_id
  description                  = "NLB to the tasks (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = aws_security_group.tasks.id
}

# --- service --------------------------------------------------------------------------

resource "aws_ecs_service" "this" {
  name                               = "fleetwire"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.min_tasks
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_execute_command             = var.enable_execute_command
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = var.on_demand_base
    weight            = 100 - var.spot_percent
  }

  dynamic "capacity_provider_strategy" {
    for_each = var.spot_percent > 0 ? [1] : []
    content {
      capacity_provider = "FARGATE_SPOT"
      weight            = var.spot_percent
    }
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.api_target_group_arn
    container_name   = local.container_name
    container_port   = var.api_port
  }

  load_balancer {
    target_group_arn = var.vehicle_target_group_arn
    container_name   = local.container_name
    container_port   = var.tesla_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }

  depends_on = [aws_ecs_cluster_capacity_providers.this]
  tags       = var.tags
}

resource "aws_appautoscaling_target" "service" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name_prefix}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "connections" {
  name               = "${var.name_prefix}-vehicle-connections"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_connections_per_task
    scale_in_cooldown  = 600
    scale_out_cooldown = 120

    customized_metric_specification {
      metrics {
        id          = "flows"
        label       = "Vehicle TCP flows on the NLB"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/NetworkELB"
            metric_name = "ActiveFlowCount"
            dimensions {
              name  = "LoadBalancer"
              value = var.vehicle_load_balancer_arn_suffix
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        label       = "Running fleetwire tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.this.name
            }
          }
        }
      }
      metrics {
        id          = "per_task"
        label       = "Vehicle connections per task"
        expression  = "flows / tasks"
        return_data = true
      }
    }
  }
}
