output "api_url" {
  description = "Base URL of the API, SSE stream and live page."
  value       = "https://${var.hostname}"
}

output "alb_dns_name" {
  description = "DNS name of the ALB (CNAME target when DNS is managed outside Route 53)."
  value       = aws_lb.this.dns_name
}

output "security_group_id" {
  description = "Security group of the ALB (the ecs module lets it reach the tasks)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "Target group of the tasks' API port."
  value       = aws_lb_target_group.api.arn
}

output "target_group_arn_suffix" {
  description = "CloudWatch dimension TargetGroup."
  value       = aws_lb_target_group.api.arn_suffix
}

output "load_balancer_arn_suffix" {
  description = "CloudWatch dimension LoadBalancer."
  value       = aws_lb.this.arn_suffix
}
