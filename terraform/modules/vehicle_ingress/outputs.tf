output "hostname" {
  description = "Vehicle hostname for the Tesla fleet-telemetry config."
  value       = var.hostname
}

output "nlb_dns_name" {
  description = "DNS name of the NLB (CNAME target when DNS is managed outside Route 53)."
  value       = aws_lb.this.dns_name
}

output "security_group_id" {
  description = "Security group of the NLB (the ecs module lets it reach the tasks)."
  value       = aws_security_group.nlb.id
}

output "target_group_arn" {
  description = "Target group of the tasks' TLS port."
  value       = aws_lb_target_group.vehicles.arn
}

output "target_group_arn_suffix" {
  description = "CloudWatch dimension TargetGroup."
  value       = aws_lb_target_group.vehicles.arn_suffix
}

output "load_balancer_arn_suffix" {
  description = "CloudWatch dimension LoadBalancer."
  value       = aws_lb.this.arn_suffix
}
