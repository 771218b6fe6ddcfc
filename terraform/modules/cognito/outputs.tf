output "issuer" {
  description = "Token issuer (auth.issuer)."
  value       = local.issuer
}

output "jwks_url" {
  description = "The pool's signing keys (auth.jwks_url)."
  value       = "${local.issuer}/.well-known/jwks.json"
}

output "client_id" {
  description = "App client id: the token audience (auth.audiences)."
  value       = aws_cognito_user_pool_client.api.id
}

output "user_pool_id" {
  description = "User pool id (create users and add them to groups here)."
  value       = aws_cognito_user_pool.this.id
}
