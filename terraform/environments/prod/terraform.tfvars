# Example settings of the prod environment (about 10,000 vehicles at 1 Hz): replace every
# value marked EDIT. Sizing rationale: docs/capacity-and-cost.md.

region              = "us-east-1"
owner               = "platform-team"                                                            # EDIT
vpc_cidr            = "10.41.0.0/16"
vehicle_hostname    = "telemetry.fleet.example.com"                                              # EDIT
api_hostname        = "api.fleet.example.com"                                                    # EDIT
api_certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-1111-1111-1111-111111111111" # EDIT
route53_zone_id     = null                                                                       # EDIT
image_tag           = "0.1.0-abc1234"                                                            # EDIT
alarm_emails        = ["oncall@example.com"]                                                     # EDIT

min_tasks            = 4
max_tasks            = 12
kinesis_shard_counts = { V = 13, alerts = 1, errors = 1, connectivity = 1 }
redis_node_type      = "cache.m7g.large"

enable_tesla_listener = false
extra_environment     = {}
