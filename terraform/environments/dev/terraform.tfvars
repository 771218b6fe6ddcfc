# Example settings of the dev environment: replace every value marked EDIT before
# `terraform apply` (docs/deploy.md walks through each one).

region              = "us-east-1"
owner               = "platform-team"                                                            # EDIT
vpc_cidr            = "10.40.0.0/16"
vehicle_hostname    = "telemetry.dev.fleet.example.com"                                          # EDIT
api_hostname        = "api.dev.fleet.example.com"                                                # EDIT
api_certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000" # EDIT
route53_zone_id     = null                                                                       # EDIT: a hosted zone id, or create CNAMEs yourself
image_tag           = "0.1.0-abc1234"                                                            # EDIT: the tag you pushed
alarm_emails        = []

# Redis without TLS/AUTH (private subnet, tasks only) until the image's Redis client speaks
# TLS: docs/deploy.md, "Before the first deployment". Set true as soon as it does.
redis_tls = false

# Only once the image has the Tesla listener (issue #9) and the tesla secrets hold PEM files.
enable_tesla_listener = false

# Consumer latency on a small fleet: poll faster than the 200 ms default (docs/performance.md).
extra_environment = {
  FLEETWIRE_CONSUMER__IDLE_POLL_MS = "100"
}
