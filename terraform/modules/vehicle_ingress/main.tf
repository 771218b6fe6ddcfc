# vehicle_ingress: the endpoint vehicles connect to (Tesla Fleet Telemetry: mTLS WebSocket).
#
# A Network Load Balancer passes TCP 443 straight through to the tasks' TLS port (8443,
# config key tesla.listen): TLS, and with it the client-certificate check that identifies
# the vehicle, terminates inside fleetwire, never at the load balancer. Health checks go to
# the admin listener's /readyz (port 9090) over HTTP, so a node that cannot reach its
# backends, or is shutting down, stops receiving new vehicles; on deregistration the NLB
# closes the remaining flows after the delay and vehicles reconnect to another task.
#
# Client IPs are not preserved (the tasks see the NLB's private addresses): fleetwire does
# not parse PROXY protocol, and the task security group can then trust the NLB's group.

resource "aws_security_group" "nlb" {
  name        = "${var.name_prefix}-vehicle-nlb"
  description = "Vehicle NLB: TLS passthrough from vehicles on 443"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name_prefix}-vehicle-nlb" })
}

resource "aws_vpc_security_group_ingress_rule" "vehicles" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.nlb.id
  description       = "Vehicles (mTLS WebSocket, TLS passthrough)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is var.deletion_protection: true in prod, false in the disposable dev environment so that terraform destroy works.
  #checkov:skip=CKV_AWS_152:Cross-zone is off on purpose (var.cross_zone): with it about half of all vehicle bytes cross AZs and are billed; ECS spreads tasks evenly over both AZs, and each AZ keeps serving if the other fails.
  #checkov:skip=CKV_AWS_91:NLB access logs exist only for TLS listeners; this listener is TCP passthrough (TLS terminates in fleetwire), so there is nothing to log at the NLB. Connection events are logged by fleetwire and VPC flow logs.
  #checkov:skip=CKV2_AWS_28:WAF cannot be attached to a Network Load Balancer; vehicles are authenticated by client certificate in fleetwire and rate-limited per vehicle there.
  name                             = "${var.name_prefix}-vehicles"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = var.public_subnet_ids
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = var.cross_zone
  enable_deletion_protection       = var.deletion_protection
  tags                             = var.tags
}

resource "aws_lb_target_group" "vehicles" {
  name                   = "${var.name_prefix}-vehicles"
  port                   = var.container_port
  protocol               = "TCP"
  target_type            = "ip"
  vpc_id                 = var.vpc_id
  deregistration_delay   = var.deregistration_delay_seconds
  preserve_client_ip     = false
  connection_termination = true

  health_check {
    protocol            = "HTTP"
    port                = tostring(var.health_check_port)
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "vehicles" {
  #checkov:skip=CKV_AWS_2:TCP passthrough is deliberate: mutual TLS must terminate in fleetwire, which reads the vehicle identity from the client certificate. The traffic is TLS end to end.
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.vehicles.arn
  }

  tags = var.tags
}

resource "aws_route53_record" "vehicles" {
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
