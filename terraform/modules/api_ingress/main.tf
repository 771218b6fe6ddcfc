# api_ingress: the public HTTPS entry of the API, SSE stream and live page (config key
# http.listen, port 8080 in the tasks).
#
# - An Application Load Balancer terminates TLS (ACM certificate) and forwards HTTP to the
#   tasks. HTTPS only: there is no port-80 listener to redirect from (API clients and the
#   deploy outputs use https:// URLs). Its idle timeout is long (>= 3600 s) so that a Server-Sent Events stream is never
#   cut by the load balancer between keep-alive comments (every 15 s by default,
#   subscribers.keep_alive_ms); SSE clients reconnect by themselves when a task drains.
# - Health checks use the admin listener's /readyz (9090). The admin listener is NOT routed:
#   no listener rule reaches port 9090; operators use ECS Exec port forwarding
#   (docs/deploy.md, "Admin endpoints").
# - AWS WAF: a rate-based rule per client IP, AWS's common rule set (with the body-size rule
#   only counting, since ingest bodies reach http.max_body_bytes = 1 MiB) and the known-bad-
#   inputs set; WAF logs go to CloudWatch Logs.

resource "aws_security_group" "alb" {
  name        = "${var.name_prefix}-api-alb"
  description = "API ALB: HTTPS from clients"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name_prefix}-api-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from API clients and browsers"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: true in prod, false in the disposable dev environment so that terraform destroy works.
  #checkov:skip=CKV2_AWS_76:Log4j protection is AWSManagedRulesKnownBadInputsRuleSet (rule aws-known-bad-inputs below); the check also demands the anonymous-IP list, which would block ingest producers in cloud hosting and operators on VPNs.
  #checkov:skip=CKV_AWS_91:Access logs need an SSE-S3 bucket writable by the regional ELB log-delivery account; set var.access_logs_bucket to the platform's existing log bucket to enable them. WAF logs (below) already record every request with its verdict.
  name                       = "${var.name_prefix}-api"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name_prefix
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "api" {
  name                 = "${var.name_prefix}-api"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_seconds

  health_check {
    protocol            = "HTTP"
    port                = tostring(var.health_check_port)
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl" "api" {
  name        = "${var.name_prefix}-api"
  description = "fleetwire API: per-IP rate limit, common and known-bad-input rules"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit                 = var.rate_limit_per_5_minutes
        aggregate_key_type    = "IP"
        evaluation_window_sec = 300
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-common"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        # Ingest bodies are up to 1 MiB (http.max_body_bytes); the 8 KB body rule would
        # block them. fleetwire enforces its own body limit (413).
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-aws-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name_prefix}-api"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "api" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.api.arn
}

# WAF requires the log group name to start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${var.name_prefix}-api"
  retention_in_days = var.waf_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "api" {
  resource_arn            = aws_wafv2_web_acl.api.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  # Never log credentials (bearer tokens, API keys, cookies).
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    single_header {
      name = "x-api-key"
    }
  }
  redacted_fields {
    single_header {
      name = "cookie"
    }
  }
}

resource "aws_route53_record" "api" {
  count   = var.route53_zone_id == null ? 0 : 1
  zone_id = var.route53_zone_id
  name    = var.hostname
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
