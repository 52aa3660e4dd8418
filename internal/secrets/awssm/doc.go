// Package awssm is the AWS Secrets Manager secrets provider: each tenant's Anthropic API key
// lives in its own secret, read and written through the AWS SDK for Go v2.
package awssm
