package awssm

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/flowgate/flowgate/internal/secrets"
)

// DefaultSecretIDTemplate is where a tenant's key lives unless the tenant has a keyRef.
const DefaultSecretIDTemplate = "flowgate/tenants/{tenant}/anthropic-api-key"

const (
	tenantPlaceholder = "{tenant}"
	maxSecretName     = 512
	maxKeyRef         = 2048
)

var (
	// secretNamePattern is the character set Secrets Manager allows in secret names.
	// (At most maxSecretName bytes, checked apart: see versionStagePattern.)
	secretNamePattern = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)
	secretARNPattern  = regexp.MustCompile(`^arn:aws(-[a-z]+)*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:([A-Za-z0-9/_+=.@-]+)$`)
	// arnSuffix is the random suffix Secrets Manager appends to a name in a full ARN.
	arnSuffix = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)
)

// idTemplate expands the secret id template for a tenant.
type idTemplate struct {
	prefix, suffix string
}

func parseTemplate(t string) (idTemplate, error) {
	if t == "" {
		t = DefaultSecretIDTemplate
	}
	if strings.Count(t, tenantPlaceholder) != 1 {
		return idTemplate{}, fmt.Errorf("secrets.aws.secret_id_template must contain %s exactly once", tenantPlaceholder)
	}
	prefix, suffix, _ := strings.Cut(t, tenantPlaceholder)
	tpl := idTemplate{prefix: prefix, suffix: suffix}
	// Every valid tenant id must expand to a valid secret name; the longest one decides.
	if sample := tpl.expand(strings.Repeat("a", 63)); !validSecretName(sample) {
		return idTemplate{}, fmt.Errorf("secrets.aws.secret_id_template does not expand to a valid secret name (characters A-Za-z0-9/_+=.@-, at most %d)", maxSecretName)
	}
	return tpl, nil
}

func (t idTemplate) expand(tenant string) string { return t.prefix + tenant + t.suffix }

// otherTenant reports whether name is the template's secret of a tenant other than tenant.
func (t idTemplate) otherTenant(name, tenant string) bool {
	if len(name) < len(t.prefix)+len(t.suffix) || !strings.HasPrefix(name, t.prefix) || !strings.HasSuffix(name, t.suffix) {
		return false
	}
	return name[len(t.prefix):len(name)-len(t.suffix)] != tenant
}

// secretID returns the id to use for tenant: the template's, or the tenant's keyRef. A keyRef
// must be a secret name or a Secrets Manager ARN, and may not name another tenant's templated
// secret. override reports that keyRef was used.
func (p *Provider) secretID(tenant, keyRef string) (id string, override bool, err error) {
	if err := secrets.ValidateTenant(tenant); err != nil {
		return "", false, err
	}
	if keyRef == "" {
		return p.tpl.expand(tenant), false, nil
	}
	if len(keyRef) > maxKeyRef {
		return "", false, fmt.Errorf("%w: keyRef longer than %d characters", secrets.ErrInvalid, maxKeyRef)
	}
	names := []string{keyRef}
	if m := secretARNPattern.FindStringSubmatch(keyRef); m != nil && len(keyRef) <= maxKeyRef && len(m[2]) <= maxSecretName {
		res := m[2]
		names = []string{res, arnSuffix.ReplaceAllString(res, "")}
	} else if !validSecretName(keyRef) {
		return "", false, fmt.Errorf("%w: keyRef must be a secret name or a secretsmanager ARN", secrets.ErrInvalid)
	}
	for _, n := range names {
		if p.tpl.otherTenant(n, tenant) {
			return "", false, fmt.Errorf("%w: keyRef names another tenant's secret", secrets.ErrInvalid)
		}
	}
	return keyRef, true, nil
}

func isARN(id string) bool { return strings.HasPrefix(id, "arn:") }

func validSecretName(s string) bool {
	return len(s) <= maxSecretName && secretNamePattern.MatchString(s)
}
