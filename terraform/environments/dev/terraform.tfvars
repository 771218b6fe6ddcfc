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

# Redis with TLS in transit and AUTH (rediss://), as in prod.
redis_tls = true

# Once the tesla secrets hold the PEM files (docs/deploy.md, "Point vehicles at it").
enable_tesla_listener = false

# Consumer latency on a small fleet: poll faster than the 200 ms default (docs/performance.md).
extra_environment = {
  FLEETWIRE_CONSUMER__IDLE_POLL_MS = "100"
}
