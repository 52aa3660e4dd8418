package awssm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go/logging"

	"github.com/flowgate/flowgate/internal/secrets"
)

// Defaults; the config keys are secrets.aws.*.
const (
	DefaultVersionStage       = "AWSCURRENT"
	DefaultRecoveryWindowDays = 7
	DefaultMaxAttempts        = 3
	DefaultMaxBackoff         = 2 * time.Second
	DefaultTimeout            = 10 * time.Second
)

// Tags put on secrets the provider creates. A keyRef override must carry TagTenant with the
// tenant's id before the provider reads, writes or deletes it.
const (
	TagTenant  = "flowgate:tenant"
	TagManaged = "flowgate:managed"
)

// maxSecretString is the Secrets Manager limit on a secret value.
const maxSecretString = 65536

// Lengths are checked apart from the patterns: a bounded repetition like {1,512} compiles
// to one state per repetition, a cost every process linking this package pays at start.
var versionStagePattern = regexp.MustCompile(`^[A-Za-z0-9_+=.@-]+$`)

// Options configures New.
type Options struct {
	// Region is the AWS region; empty means the SDK default chain (AWS_REGION, profile).
	Region string
	// Endpoint overrides the service endpoint (VPC endpoints, tests). It must be https, or
	// http on a loopback address.
	Endpoint string
	// SecretIDTemplate names a tenant's secret; {tenant} is replaced by the tenant id.
	// Default DefaultSecretIDTemplate.
	SecretIDTemplate string
	// VersionStage is the staging label read. Default AWSCURRENT.
	VersionStage string
	// RecoveryWindowDays is passed to DeleteSecret: nil means 7, 0 deletes at once without
	// recovery, otherwise 7–30.
	RecoveryWindowDays *int
	// FingerprintKey is the HMAC key of secrets.Fingerprint. Required.
	FingerprintKey []byte
	// Credentials, when set, replace the SDK default credential chain (tests, static keys).
	Credentials aws.CredentialsProvider
	// HTTPClient, when set, replaces the SDK's HTTP client.
	HTTPClient aws.HTTPClient
	// MaxAttempts bounds SDK attempts per call (default 3); MaxBackoff bounds the wait
	// between them (default 2s); Timeout bounds each provider method including every
	// attempt and, for Put/Describe, every call it makes (default 10s).
	MaxAttempts int
	MaxBackoff  time.Duration
	Timeout     time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Provider implements secrets.Provider on AWS Secrets Manager.
type Provider struct {
	client   *secretsmanager.Client
	tpl      idTemplate
	stage    string
	recovery int
	fpKey    []byte
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
}

var _ secrets.Provider = (*Provider)(nil)

// New builds the SDK client. It does not contact AWS; ctx only bounds loading the SDK's
// shared configuration.
func New(ctx context.Context, opts Options) (*Provider, error) {
	tpl, err := parseTemplate(opts.SecretIDTemplate)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		tpl:      tpl,
		stage:    opts.VersionStage,
		recovery: DefaultRecoveryWindowDays,
		fpKey:    append([]byte(nil), opts.FingerprintKey...),
		timeout:  opts.Timeout,
		now:      opts.Now,
		log:      opts.Logger,
	}
	if p.stage == "" {
		p.stage = DefaultVersionStage
	}
	if len(p.stage) > 256 || !versionStagePattern.MatchString(p.stage) {
		return nil, errors.New("secrets.aws.version_stage is not a valid staging label")
	}
	if opts.RecoveryWindowDays != nil {
		p.recovery = *opts.RecoveryWindowDays
		if p.recovery != 0 && (p.recovery < 7 || p.recovery > 30) {
			return nil, errors.New("secrets.aws.recovery_window_days must be 0 (no recovery) or 7-30")
		}
	}
	if len(p.fpKey) == 0 {
		return nil, errors.New("aws secrets: fingerprint key is required")
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if opts.Endpoint != "" {
		if err := checkEndpoint(opts.Endpoint); err != nil {
			return nil, err
		}
	}
	attempts := opts.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	backoff := opts.MaxBackoff
	if backoff <= 0 {
		backoff = DefaultMaxBackoff
	}
	retryer := retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.MaxBackoff = backoff
	})

	load := []func(*config.LoadOptions) error{}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(opts.Credentials))
	}
	if opts.HTTPClient != nil {
		load = append(load, config.WithHTTPClient(opts.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("aws secrets: load sdk config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("secrets.aws.region is required (or AWS_REGION in the environment)")
	}
	sdkLog := p.log.With("component", "aws-sdk")
	p.client = secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.Retryer = retryer
		o.RetryMaxAttempts = 0 // AWS_MAX_ATTEMPTS must not lift the bound
		// Request/response body logging would write SecretString; never enable it.
		o.ClientLogMode = 0
		o.Logger = logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			sdkLog.Warn(scrub(fmt.Sprintf(format, v...), ""), "classification", string(c))
		})
	})
	return p, nil
}

// checkEndpoint refuses an endpoint that would send keys in clear text off the machine.
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("secrets.aws.endpoint must be an absolute http(s) URL without credentials or query")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return errors.New("secrets.aws.endpoint must use https unless it is a loopback address")
	}
	return errors.New("secrets.aws.endpoint must be an http(s) URL")
}

func (p *Provider) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.timeout)
}

// Get fetches the tenant's key from its own secret: the template's id, or keyRef when set
// (which must be tagged flowgate:tenant=<tenant>). The value is the key itself or JSON
// {"apiKey":"…"}.
func (p *Provider) Get(ctx context.Context, tenant, keyRef string) (string, string, error) {
	id, override, err := p.secretID(tenant, keyRef)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	if override {
		if _, err := p.describeOwned(ctx, tenant, id); err != nil {
			return "", "", err
		}
	}
	value, out, err := p.getValue(ctx, tenant, id)
	if err != nil {
		return "", "", deletedAsNotFound(err)
	}
	p.log.Debug("tenant key fetched", "tenant", tenant, "secret_id", id, "version_id", aws.ToString(out.VersionId))
	return value, aws.ToString(out.VersionId), nil
}

func (p *Provider) getValue(ctx context.Context, tenant, id string) (string, *secretsmanager.GetSecretValueOutput, error) {
	const op = "GetSecretValue"
	out, err := p.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(id),
		VersionStage: aws.String(p.stage),
	})
	if err != nil {
		return "", nil, p.apiError(op, tenant, id, err)
	}
	value, err := parseValue(out.SecretString)
	if err != nil {
		return "", nil, &Error{Op: op, Tenant: tenant, SecretID: id, Detail: err.Error(), kind: secrets.ErrUnavailable}
	}
	return value, out, nil
}

type jsonValue struct {
	APIKey string `json:"apiKey"`
}

// parseValue extracts the key from a secret string. Its errors never quote the value: JSON
// syntax errors would.
func parseValue(s *string) (string, error) {
	if s == nil {
		return "", errors.New("secret has no string value")
	}
	if len(*s) > maxSecretString {
		return "", errors.New("secret value too large")
	}
	v := strings.TrimSpace(*s)
	if strings.HasPrefix(v, "{") {
		var raw map[string]json.RawMessage
		if json.Unmarshal([]byte(v), &raw) != nil {
			return "", errors.New("secret value is not valid JSON")
		}
		var key string
		if json.Unmarshal(raw["apiKey"], &key) != nil || key == "" {
			return "", errors.New(`secret value is JSON without a string "apiKey" field`)
		}
		v = key
	}
	if secrets.ValidateAPIKey(v) != nil {
		return "", errors.New("secret value is not a well-formed api key")
	}
	return v, nil
}

// describeOwned describes id and checks it is a live secret tagged for tenant. It guards
// keyRef overrides: without it a keyRef could point the engine at any secret the gateway's
// IAM role can read.
func (p *Provider) describeOwned(ctx context.Context, tenant, id string) (*secretsmanager.DescribeSecretOutput, error) {
	const op = "DescribeSecret"
	out, err := p.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
	if err != nil {
		return nil, p.apiError(op, tenant, id, err)
	}
	if tag(out.Tags, TagTenant) != tenant {
		p.log.Warn("keyRef secret is not tagged for the tenant", "tenant", tenant, "secret_id", id)
		return out, &Error{Op: op, Tenant: tenant, SecretID: id, Detail: "secret is not tagged " + TagTenant + "=" + tenant, kind: secrets.ErrInvalid}
	}
	return out, nil
}

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// Put stores value as JSON {"apiKey":"…"} in a new version of the tenant's secret, creating
// the secret (tagged flowgate:tenant and flowgate:managed) when it does not exist and
// restoring it when it is scheduled for deletion.
func (p *Provider) Put(ctx context.Context, tenant, keyRef, value string) (secrets.Metadata, error) {
	id, override, err := p.secretID(tenant, keyRef)
	if err != nil {
		return secrets.Metadata{}, err
	}
	if err := secrets.ValidateAPIKey(value); err != nil {
		return secrets.Metadata{}, err
	}
	body, err := json.Marshal(jsonValue{APIKey: value})
	if err != nil {
		return secrets.Metadata{}, fmt.Errorf("%w: encode secret value", secrets.ErrInvalid)
	}
	secretString := string(body)
	ctx, cancel := p.ctx(ctx)
	defer cancel()

	if override {
		_, err := p.describeOwned(ctx, tenant, id)
		if errors.Is(err, secrets.ErrNotFound) && isARN(id) {
			return secrets.Metadata{}, fmt.Errorf("%w: a secret cannot be created from an ARN keyRef", err)
		}
		if err != nil && !errors.Is(err, secrets.ErrNotFound) {
			return secrets.Metadata{}, err
		}
	}

	arn, version, err := p.putValue(ctx, tenant, id, secretString, value)
	if isDeleted(err) {
		if err = p.restore(ctx, tenant, id); err == nil {
			arn, version, err = p.putValue(ctx, tenant, id, secretString, value)
		}
	}
	if errors.Is(err, secrets.ErrNotFound) && !isARN(id) {
		arn, version, err = p.create(ctx, tenant, id, secretString, value)
	}
	if err != nil {
		return secrets.Metadata{}, err
	}
	fp := secrets.Fingerprint(p.fpKey, value)
	p.log.Info("tenant key stored", "tenant", tenant, "secret_id", id, "version_id", version, "fingerprint", fp)
	return secrets.Metadata{
		Tenant:      tenant,
		Fingerprint: fp,
		Version:     version,
		UpdatedAt:   p.now().UTC(),
		Provider:    secrets.ProviderAWS,
		SecretID:    firstNonEmpty(arn, id),
	}, nil
}

func (p *Provider) putValue(ctx context.Context, tenant, id, secretString, value string) (arn, version string, err error) {
	out, err := p.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(id),
		SecretString: aws.String(secretString),
	})
	if err != nil {
		return "", "", p.apiErrorScrub("PutSecretValue", tenant, id, err, value)
	}
	return aws.ToString(out.ARN), aws.ToString(out.VersionId), nil
}

func (p *Provider) create(ctx context.Context, tenant, id, secretString, value string) (arn, version string, err error) {
	out, err := p.client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(id),
		SecretString: aws.String(secretString),
		Description:  aws.String("Anthropic API key of flowgate tenant " + tenant),
		Tags: []types.Tag{
			{Key: aws.String(TagTenant), Value: aws.String(tenant)},
			{Key: aws.String(TagManaged), Value: aws.String("true")},
		},
	})
	var exists *types.ResourceExistsException
	if errors.As(err, &exists) {
		// Another replica created it first; write a new version over theirs.
		return p.putValue(ctx, tenant, id, secretString, value)
	}
	if err != nil {
		return "", "", p.apiErrorScrub("CreateSecret", tenant, id, err, value)
	}
	p.log.Info("tenant secret created", "tenant", tenant, "secret_id", id)
	return aws.ToString(out.ARN), aws.ToString(out.VersionId), nil
}

func (p *Provider) restore(ctx context.Context, tenant, id string) error {
	if _, err := p.client.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: aws.String(id)}); err != nil {
		return p.apiError("RestoreSecret", tenant, id, err)
	}
	p.log.Info("tenant secret restored from scheduled deletion", "tenant", tenant, "secret_id", id)
	return nil
}

// Delete deletes the tenant's secret, with the configured recovery window.
func (p *Provider) Delete(ctx context.Context, tenant, keyRef string) error {
	id, override, err := p.secretID(tenant, keyRef)
	if err != nil {
		return err
	}
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	if override {
		if _, err := p.describeOwned(ctx, tenant, id); err != nil {
			return deletedAsNotFound(err)
		}
	}
	in := &secretsmanager.DeleteSecretInput{SecretId: aws.String(id)}
	if p.recovery == 0 {
		in.ForceDeleteWithoutRecovery = aws.Bool(true)
	} else {
		in.RecoveryWindowInDays = aws.Int64(int64(p.recovery))
	}
	if _, err := p.client.DeleteSecret(ctx, in); err != nil {
		return deletedAsNotFound(p.apiError("DeleteSecret", tenant, id, err))
	}
	p.log.Info("tenant key deleted", "tenant", tenant, "secret_id", id, "recovery_window_days", p.recovery)
	return nil
}

// Describe returns the metadata of the tenant's current key; the fingerprint is computed from
// the value of the configured version stage.
func (p *Provider) Describe(ctx context.Context, tenant, keyRef string) (secrets.Metadata, error) {
	id, override, err := p.secretID(tenant, keyRef)
	if err != nil {
		return secrets.Metadata{}, err
	}
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	var desc *secretsmanager.DescribeSecretOutput
	if override {
		desc, err = p.describeOwned(ctx, tenant, id)
	} else {
		desc, err = p.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
		if err != nil {
			err = p.apiError("DescribeSecret", tenant, id, err)
		}
	}
	if err != nil {
		return secrets.Metadata{}, deletedAsNotFound(err)
	}
	if desc.DeletedDate != nil {
		return secrets.Metadata{}, &Error{Op: "DescribeSecret", Tenant: tenant, SecretID: id, Detail: "secret is scheduled for deletion", kind: secrets.ErrNotFound}
	}
	value, out, err := p.getValue(ctx, tenant, id)
	if err != nil {
		return secrets.Metadata{}, deletedAsNotFound(err)
	}
	updated := aws.ToTime(out.CreatedDate)
	if updated.IsZero() {
		updated = aws.ToTime(desc.LastChangedDate)
	}
	return secrets.Metadata{
		Tenant:      tenant,
		Fingerprint: secrets.Fingerprint(p.fpKey, value),
		Version:     aws.ToString(out.VersionId),
		UpdatedAt:   updated.UTC(),
		Provider:    secrets.ProviderAWS,
		SecretID:    firstNonEmpty(aws.ToString(desc.ARN), id),
	}, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
