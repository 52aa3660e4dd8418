package awssm

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/flowgate/flowgate/internal/secrets"
)

// Error is a failed Secrets Manager call. Its text is built from the error code, HTTP status,
// request id and a scrubbed, bounded service message — never from request bodies — so it
// cannot carry key material. It unwraps to secrets.ErrNotFound, secrets.ErrUnavailable or
// secrets.ErrInvalid, and to the context error when the call was cut short.
type Error struct {
	Op        string // Secrets Manager operation, e.g. GetSecretValue
	Tenant    string
	SecretID  string
	Code      string // AWS error code; empty for transport failures
	Status    int    // HTTP status; 0 without a response
	RequestID string
	Detail    string
	kind      error
	ctxErr    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.kind.Error())
	fmt.Fprintf(&b, ": tenant %s: secretsmanager %s %s", e.Tenant, e.Op, e.SecretID)
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Status != 0 || e.RequestID != "" {
		fmt.Fprintf(&b, " (http %d, request id %q)", e.Status, e.RequestID)
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.kind, e.ctxErr}
	}
	return []error{e.kind}
}

const maxDetail = 300

var keyShape = regexp.MustCompile(`sk-ant-[A-Za-z0-9_-]*`)

// scrub bounds a message from the service or the transport and removes anything that could
// be a key: the value being written (if any) and anything shaped like an Anthropic key.
func scrub(msg, value string) string {
	if value != "" {
		msg = strings.ReplaceAll(msg, value, "[REDACTED]")
	}
	msg = keyShape.ReplaceAllString(msg, "[REDACTED]")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxDetail {
		msg = strings.ToValidUTF8(msg[:maxDetail], "") + "…"
	}
	return msg
}

func (p *Provider) apiError(op, tenant, id string, err error) error {
	return p.apiErrorScrub(op, tenant, id, err, "")
}

// apiErrorScrub maps an SDK error: a missing secret (or missing version stage) is
// ErrNotFound; everything else — throttling after the retryer gave up, 5xx, access denied,
// network, timeouts — is ErrUnavailable.
func (p *Provider) apiErrorScrub(op, tenant, id string, err error, value string) error {
	e := &Error{Op: op, Tenant: tenant, SecretID: id, kind: secrets.ErrUnavailable}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status = re.HTTPStatusCode()
		e.RequestID = re.ServiceRequestID()
	}
	var ae smithy.APIError
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf):
		e.kind = secrets.ErrNotFound
		e.Code = nf.ErrorCode()
		e.Detail = scrub(nf.ErrorMessage(), value)
	case errors.As(err, &ae):
		e.Code = ae.ErrorCode()
		e.Detail = scrub(ae.ErrorMessage(), value)
	case errors.Is(err, context.DeadlineExceeded):
		e.Detail = "timed out"
		e.ctxErr = context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		e.Detail = "canceled"
		e.ctxErr = context.Canceled
	default:
		e.Detail = scrub(err.Error(), value)
	}
	return e
}

// isDeleted reports an InvalidRequestException about a secret scheduled for deletion: the
// service answers so, not ResourceNotFound, for the whole recovery window.
func isDeleted(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == "InvalidRequestException" && strings.Contains(strings.ToLower(e.Detail), "deletion")
}

// deletedAsNotFound turns "scheduled for deletion" into ErrNotFound: for readers the tenant
// has no key.
func deletedAsNotFound(err error) error {
	var e *Error
	if isDeleted(err) && errors.As(err, &e) {
		c := *e
		c.kind = secrets.ErrNotFound
		return &c
	}
	return err
}
