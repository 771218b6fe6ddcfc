output "stream_names" {
  description = "Stream name per topic."
  value       = { for t, s in aws_kinesis_stream.topic : t => s.name }
}

output "stream_arns" {
  description = "Stream ARN per topic."
  value       = { for t, s in aws_kinesis_stream.topic : t => s.arn }
}

output "vehicle_data_stream_name" {
  description = "The V stream: the value of config key kinesis.stream_name."
  value       = aws_kinesis_stream.topic["V"].name
}
