# cognito: the identity provider of the public API (docs/operations.md, "Amazon Cognito").
#
# A user pool whose tokens fleetwire accepts: the tenant in the immutable custom attribute
# `tenant_id` (claim `custom:tenant_id`, fleetwire's default `auth.tenant_claim`), the role
# as a group `viewer`, `operator` or `tenant-admin` (claim `cognito:groups`, the default
# `auth.groups_claim`), and one app client whose id is the token audience. Users are created
# by an administrator (no self sign-up): a self-registered user could pick its own tenant.
# ID tokens carry `custom:tenant_id` as is; for access tokens add it with a
# pre-token-generation trigger (not created here).

data "aws_region" "current" {}

resource "aws_cognito_user_pool" "this" {
  name                = "${var.name_prefix}-users"
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  mfa_configuration   = "OPTIONAL"

  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  software_token_mfa_configuration {
    enabled = true
  }

  password_policy {
    minimum_length                   = 14
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = true
    temporary_password_validity_days = 3
  }

  user_pool_add_ons {
    advanced_security_mode = var.advanced_security_mode
  }

  schema {
    name                     = "tenant_id"
    attribute_data_type      = "String"
    mutable                  = false
    developer_only_attribute = false
    required                 = false
    # TenantId::parse: 1-64 characters.
    string_attribute_constraints {
      min_length = 1
      max_length = 64
    }
  }

  tags = var.tags
}

resource "aws_cognito_user_group" "role" {
  # The role names of src/auth/roles.rs.
  for_each     = toset(["viewer", "operator", "tenant-admin"])
  name         = each.key
  user_pool_id = aws_cognito_user_pool.this.id
  description  = "fleetwire role ${each.key}"
}

resource "aws_cognito_user_pool_client" "api" {
  name         = "${var.name_prefix}-api"
  user_pool_id = aws_cognito_user_pool.this.id
  # A public client (the page, CLIs): no secret, SRP sign-in and refresh tokens only.
  generate_secret               = false
  explicit_auth_flows           = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors = "ENABLED"
  enable_token_revocation       = true
  access_token_validity         = 60
  id_token_validity             = 60
  refresh_token_validity        = 12
  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "hours"
  }
  read_attributes = ["email", "custom:tenant_id"]
  # Nobody may change a tenant through the client: the attribute is set by administrators.
  write_attributes = ["email"]
}

locals {
  issuer = "https://cognito-idp.${data.aws_region.current.region}.amazonaws.com/${aws_cognito_user_pool.this.id}"
}
