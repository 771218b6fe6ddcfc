output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets (load balancers only), one per AZ."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (tasks, Redis, endpoints), one per AZ."
  value       = aws_subnet.private[*].id
}

output "gateway_endpoint_prefix_list_ids" {
  description = "Prefix lists of the DynamoDB and S3 gateway endpoints, for security-group egress rules."
  value       = [for e in aws_vpc_endpoint.gateway : e.prefix_list_id]
}
