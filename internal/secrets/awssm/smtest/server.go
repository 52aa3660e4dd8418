package smtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Operations the server implements (the X-Amz-Target suffix).
const (
	OpGetSecretValue = "GetSecretValue"
	OpPutSecretValue = "PutSecretValue"
	OpCreateSecret   = "CreateSecret"
	OpDescribeSecret = "DescribeSecret"
	OpDeleteSecret   = "DeleteSecret"
	OpRestoreSecret  = "RestoreSecret"
)

const (
	contentType   = "application/x-amz-json-1.1"
	targetPrefix  = "secretsmanager."
	stageCurrent  = "AWSCURRENT"
	stagePrevious = "AWSPREVIOUS"
	maxBody       = 1 << 20
	maxRecorded   = 10000
	maxValue      = 65536
)

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)
	credPattern = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$`)
)

// Test credentials the server accepts unless Options names others.
const (
	DefaultAccessKeyID     = "AKIDSMTEST0000000000"
	DefaultSecretAccessKey = "smtest/secret/access/key/0000000000000000"
)

// Failure is an injected error response.
type Failure int

const (
	// Throttle answers HTTP 400 ThrottlingException (the SDK retries it).
	Throttle Failure = iota + 1
	// InternalError answers HTTP 500 InternalServiceError (the SDK retries it).
	InternalError
	// NotFound answers HTTP 400 ResourceNotFoundException.
	NotFound
	// AccessDenied answers HTTP 400 AccessDeniedException.
	AccessDenied
)

// Options configures New. All fields are optional.
type Options struct {
	Region    string // default us-east-1
	AccountID string // default 123456789012
	// AccessKeyID and SecretAccessKey are the only credentials the server accepts; every
	// request's SigV4 signature is verified against them (InvalidSignatureException,
	// UnrecognizedClientException). Default DefaultAccessKeyID / DefaultSecretAccessKey;
	// Server.Credentials hands them to the SDK.
	AccessKeyID     string
	SecretAccessKey string
	Now             func() time.Time
}

// Request is one recorded call.
type Request struct {
	Op           string
	SecretID     string // SecretId, or Name for CreateSecret
	Signed       bool   // an "Authorization: AWS4-HMAC-SHA256 Credential=…" header was present
	AccessKeyID  string // from the credential scope
	Region       string // from the credential scope
	VersionStage string
	Tags         map[string]string // CreateSecret
	ForceDelete  bool              // DeleteSecret
	RecoveryDays int64             // DeleteSecret
	Status       int               // HTTP status answered
	ErrorType    string            // __type answered, if an error
}

// Secret is a snapshot of a stored secret.
type Secret struct {
	Name            string
	ARN             string
	Description     string
	Tags            map[string]string
	CurrentVersion  string
	PreviousVersion string
	Current         string // SecretString of AWSCURRENT
	Versions        int
	Deleted         bool
}

type version struct {
	id      string
	value   string
	stages  []string
	created time.Time
}

type secret struct {
	name, arn, description string
	tags                   map[string]string
	versions               map[string]*version
	created, changed       time.Time
	deletedAt              time.Time // scheduled deletion date; zero when live
}

type failRule struct {
	op   string
	kind Failure
	left int
}

// Server is a fake Secrets Manager endpoint on a loopback httptest server.
type Server struct {
	// URL is the endpoint to give the SDK (BaseEndpoint).
	URL string

	opts Options
	srv  *httptest.Server

	mu       sync.Mutex
	secrets  map[string]*secret // by name
	requests []Request
	counts   map[string]int
	fails    []*failRule
	pauses   map[string]chan struct{}
}

// New starts a server and stops it when tb ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccessKeyID == "" {
		opts.AccessKeyID, opts.SecretAccessKey = DefaultAccessKeyID, DefaultSecretAccessKey
	}
	s := &Server{
		opts:    opts,
		secrets: make(map[string]*secret),
		counts:  make(map[string]int),
		pauses:  make(map[string]chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Credentials returns static credentials the server accepts.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.opts.AccessKeyID, s.opts.SecretAccessKey, "")
}

// Region is the region the server expects in credential scopes and ARNs.
func (s *Server) Region() string { return s.opts.Region }

// IsolateEnv keeps the SDK's default configuration chain off the host: no shared config or
// credential files, no profile, no endpoint or region from the environment, and no EC2
// instance metadata (IMDS) lookups. It uses t.Setenv, so the test must not be parallel.
func IsolateEnv(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
}

// Close releases paused requests and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	for op, ch := range s.pauses {
		close(ch)
		delete(s.pauses, op)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Requests returns every recorded request in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many requests of op arrived ("" counts all).
func (s *Server) Count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" {
		n := 0
		for _, c := range s.counts {
			n += c
		}
		return n
	}
	return s.counts[op]
}

// Reset forgets recorded requests, counts and pending failures; secrets are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.counts = make(map[string]int)
	s.fails = nil
}

// Fail makes the next n requests of op ("" for any operation) fail with f.
func (s *Server) Fail(op string, f Failure, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, &failRule{op: op, kind: f, left: n})
}

// Pause holds every request of op, after it is recorded, until release is called (or the
// server closes).
func (s *Server) Pause(op string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.pauses[op] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.pauses[op] == ch {
				delete(s.pauses, op)
				close(ch)
			}
			s.mu.Unlock()
		})
	}
}

// SetSecret stores value as a new AWSCURRENT version of name, creating the secret with tags
// if needed, without going through the API. It returns the new version id.
func (s *Server) SetSecret(name, value string, tags map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	sec := s.secrets[name]
	if sec == nil {
		sec = s.newSecret(name, "", tags, now)
	}
	v := sec.addVersion(newID(), value, now)
	return v.id
}

// Secret returns a snapshot of the secret called name.
func (s *Server) Secret(name string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil {
		return Secret{}, false
	}
	out := Secret{Name: sec.name, ARN: sec.arn, Description: sec.description, Tags: maps.Clone(sec.tags),
		Versions: len(sec.versions), Deleted: !sec.deletedAt.IsZero()}
	if v := sec.stage(stageCurrent); v != nil {
		out.CurrentVersion, out.Current = v.id, v.value
	}
	if v := sec.stage(stagePrevious); v != nil {
		out.PreviousVersion = v.id
	}
	return out, true
}

func (s *Server) newSecret(name, desc string, tags map[string]string, now time.Time) *secret {
	sec := &secret{
		name: name, description: desc, tags: maps.Clone(tags),
		arn:      fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", s.opts.Region, s.opts.AccountID, name, randAlnum(6)),
		versions: make(map[string]*version), created: now, changed: now,
	}
	if sec.tags == nil {
		sec.tags = map[string]string{}
	}
	s.secrets[name] = sec
	return sec
}

func (sec *secret) stage(label string) *version {
	for _, v := range sec.versions {
		if slices.Contains(v.stages, label) {
			return v
		}
	}
	return nil
}

// addVersion makes a new AWSCURRENT version; the old current becomes AWSPREVIOUS and the old
// previous loses its label, as the service does.
func (sec *secret) addVersion(id, value string, now time.Time) *version {
	if prev := sec.stage(stagePrevious); prev != nil {
		prev.stages = slices.DeleteFunc(prev.stages, func(l string) bool { return l == stagePrevious })
	}
	if cur := sec.stage(stageCurrent); cur != nil {
		cur.stages = slices.DeleteFunc(cur.stages, func(l string) bool { return l == stageCurrent })
		cur.stages = append(cur.stages, stagePrevious)
	}
	v := &version{id: id, value: value, stages: []string{stageCurrent}, created: now}
	sec.versions[id] = v
	sec.changed = now
	return v
}

func (s *Server) lookup(id string) *secret {
	if sec := s.secrets[id]; sec != nil {
		return sec
	}
	if strings.HasPrefix(id, "arn:") {
		for _, sec := range s.secrets {
			if sec.arn == id {
				return sec
			}
		}
	}
	return nil
}

type apiErr struct {
	status int
	typ    string
	msg    string
}

func errNotFound(msg string) *apiErr { return &apiErr{400, "ResourceNotFoundException", msg} }
func errInvalidRequest(msg string) *apiErr {
	return &apiErr{400, "InvalidRequestException", msg}
}
func errInvalidParam(msg string) *apiErr { return &apiErr{400, "InvalidParameterException", msg} }

var errMarkedForDeletion = errInvalidRequest("You can't perform this operation on the secret because it was marked for deletion.")

func failure(f Failure) *apiErr {
	switch f {
	case Throttle:
		return &apiErr{400, "ThrottlingException", "Rate exceeded"}
	case InternalError:
		return &apiErr{500, "InternalServiceError", "An error occurred on the server side."}
	case NotFound:
		return errNotFound("Secrets Manager can't find the specified secret.")
	case AccessDenied:
		return &apiErr{400, "AccessDeniedException", "User is not authorized to perform this operation"}
	}
	return &apiErr{500, "InternalServiceError", "unknown injected failure"}
}

// request is the union of the request shapes of the implemented operations.
type request struct {
	SecretID                   string `json:"SecretId"`
	Name                       string
	SecretString               *string
	SecretBinary               []byte
	ClientRequestToken         string
	Description                string
	VersionID                  string `json:"VersionId"`
	VersionStage               string
	Tags                       []struct{ Key, Value string }
	RecoveryWindowInDays       *int64
	ForceDeleteWithoutRecovery *bool
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newID()
	w.Header().Set("x-amzn-RequestId", reqID)
	rec := Request{}
	auth := r.Header.Get("Authorization")
	m := credPattern.FindStringSubmatch(auth)
	if m != nil {
		rec.Signed, rec.AccessKeyID, rec.Region = true, m[1], m[3]
	}
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	rec.Op = op
	body, rerr := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	var in request
	var aerr *apiErr
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		aerr = &apiErr{404, "UnknownOperationException", "only POST / is served"}
	case !strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix):
		aerr = &apiErr{400, "UnknownOperationException", "missing or foreign X-Amz-Target"}
	case !strings.HasPrefix(r.Header.Get("Content-Type"), contentType):
		aerr = &apiErr{400, "SerializationException", "Content-Type must be " + contentType}
	case rerr != nil || len(body) > maxBody:
		aerr = &apiErr{400, "SerializationException", "request body unreadable or too large"}
	case json.Unmarshal(body, &in) != nil:
		aerr = &apiErr{400, "SerializationException", "request body is not valid JSON"}
	case m == nil:
		aerr = &apiErr{400, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	default:
		aerr = s.verify(r, body, m)
	}
	rec.SecretID = in.SecretID
	if op == OpCreateSecret {
		rec.SecretID = in.Name
		rec.Tags = map[string]string{}
		for _, t := range in.Tags {
			rec.Tags[t.Key] = t.Value
		}
	}
	rec.VersionStage = in.VersionStage
	if in.ForceDeleteWithoutRecovery != nil {
		rec.ForceDelete = *in.ForceDeleteWithoutRecovery
	}
	if in.RecoveryWindowInDays != nil {
		rec.RecoveryDays = *in.RecoveryWindowInDays
	}

	s.mu.Lock()
	s.counts[op]++
	if aerr == nil {
		for i, f := range s.fails {
			if f.op == "" || f.op == op {
				aerr = failure(f.kind)
				if f.left--; f.left <= 0 {
					s.fails = slices.Delete(s.fails, i, i+1)
				}
				break
			}
		}
	}
	pause := s.pauses[op]
	s.mu.Unlock()

	if pause != nil {
		select {
		case <-pause:
		case <-r.Context().Done():
		}
	}

	var out []byte
	if aerr == nil {
		// Marshal under the lock: responses share slices with the stored versions.
		s.mu.Lock()
		var v any
		if v, aerr = s.dispatch(op, &in); aerr == nil {
			out, _ = json.Marshal(v)
		}
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", contentType)
	if aerr != nil {
		rec.Status, rec.ErrorType = aerr.status, aerr.typ
		s.record(rec)
		w.Header().Set("X-Amzn-ErrorType", aerr.typ)
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": aerr.typ, "message": aerr.msg})
		return
	}
	rec.Status = http.StatusOK
	s.record(rec)
	_, _ = w.Write(out)
}

func (s *Server) record(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < maxRecorded {
		s.requests = append(s.requests, rec)
	}
}

// verify checks the SigV4 signature by re-signing the signed headers with the configured
// credentials.
func (s *Server) verify(r *http.Request, body []byte, m []string) *apiErr {
	if m[1] != s.opts.AccessKeyID {
		return &apiErr{400, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if m[4] != "secretsmanager" || m[3] != s.opts.Region {
		return &apiErr{400, "InvalidSignatureException", "Credential should be scoped to a valid region and service."}
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return &apiErr{400, "IncompleteSignatureException", "X-Amz-Date is missing or malformed."}
	}
	re, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	re.Host = r.Host
	re.ContentLength = int64(len(body))
	for _, h := range strings.Split(m[5], ";") {
		if h == "host" || h == "content-length" {
			continue
		}
		for _, v := range r.Header.Values(h) {
			re.Header.Add(h, v)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.opts.AccessKeyID, SecretAccessKey: s.opts.SecretAccessKey, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, re, hex.EncodeToString(sum[:]), "secretsmanager", m[3], signingTime); err != nil {
		return &apiErr{500, "InternalServiceError", "signer failed"}
	}
	got := credPattern.FindStringSubmatch(re.Header.Get("Authorization"))
	if got == nil || got[6] != m[6] || got[5] != m[5] {
		return &apiErr{400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."}
	}
	return nil
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// dispatch runs one operation; s.mu is held.
func (s *Server) dispatch(op string, in *request) (any, *apiErr) {
	now := s.opts.Now()
	switch op {
	case OpGetSecretValue:
		sec := s.lookup(in.SecretID)
		if sec == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret.")
		}
		if !sec.deletedAt.IsZero() {
			return nil, errMarkedForDeletion
		}
		var v *version
		switch {
		case in.VersionID != "":
			v = sec.versions[in.VersionID]
			if v != nil && in.VersionStage != "" && !slices.Contains(v.stages, in.VersionStage) {
				v = nil
			}
		default:
			stage := in.VersionStage
			if stage == "" {
				stage = stageCurrent
			}
			v = sec.stage(stage)
		}
		if v == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret value for staging label: " + cmp(in.VersionStage, stageCurrent))
		}
		return map[string]any{
			"ARN": sec.arn, "Name": sec.name, "VersionId": v.id, "SecretString": v.value,
			"VersionStages": v.stages, "CreatedDate": epoch(v.created),
		}, nil

	case OpPutSecretValue:
		sec := s.lookup(in.SecretID)
		if sec == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret.")
		}
		if !sec.deletedAt.IsZero() {
			return nil, errMarkedForDeletion
		}
		if in.SecretString == nil || len(*in.SecretString) > maxValue {
			return nil, errInvalidParam("You must provide a SecretString of at most 65536 bytes.")
		}
		id := cmp(in.ClientRequestToken, newID())
		if v := sec.versions[id]; v != nil {
			if v.value != *in.SecretString {
				return nil, &apiErr{400, "ResourceExistsException", "You can't modify an existing version, you can only create a new version."}
			}
			return map[string]any{"ARN": sec.arn, "Name": sec.name, "VersionId": v.id, "VersionStages": v.stages}, nil
		}
		v := sec.addVersion(id, *in.SecretString, now)
		return map[string]any{"ARN": sec.arn, "Name": sec.name, "VersionId": v.id, "VersionStages": v.stages}, nil

	case OpCreateSecret:
		if !namePattern.MatchString(in.Name) {
			return nil, errInvalidParam("Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
		}
		if sec := s.secrets[in.Name]; sec != nil {
			if !sec.deletedAt.IsZero() {
				return nil, errInvalidRequest("You can't create this secret because a secret with this name is already scheduled for deletion.")
			}
			return nil, &apiErr{400, "ResourceExistsException", "The operation failed because the secret " + in.Name + " already exists."}
		}
		if in.SecretString != nil && len(*in.SecretString) > maxValue {
			return nil, errInvalidParam("SecretString is too large.")
		}
		tags := map[string]string{}
		for _, t := range in.Tags {
			tags[t.Key] = t.Value
		}
		sec := s.newSecret(in.Name, in.Description, tags, now)
		out := map[string]any{"ARN": sec.arn, "Name": sec.name}
		if in.SecretString != nil {
			v := sec.addVersion(cmp(in.ClientRequestToken, newID()), *in.SecretString, now)
			out["VersionId"] = v.id
		}
		return out, nil

	case OpDescribeSecret:
		sec := s.lookup(in.SecretID)
		if sec == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret.")
		}
		tags := []map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(sec.tags)) {
			tags = append(tags, map[string]string{"Key": k, "Value": sec.tags[k]})
		}
		stages := map[string][]string{}
		for id, v := range sec.versions {
			if len(v.stages) > 0 {
				stages[id] = v.stages
			}
		}
		out := map[string]any{
			"ARN": sec.arn, "Name": sec.name, "Description": sec.description, "Tags": tags,
			"VersionIdsToStages": stages, "CreatedDate": epoch(sec.created), "LastChangedDate": epoch(sec.changed),
		}
		if !sec.deletedAt.IsZero() {
			out["DeletedDate"] = epoch(sec.deletedAt)
		}
		return out, nil

	case OpDeleteSecret:
		sec := s.lookup(in.SecretID)
		if sec == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret.")
		}
		force := in.ForceDeleteWithoutRecovery != nil && *in.ForceDeleteWithoutRecovery
		days := int64(30)
		if in.RecoveryWindowInDays != nil {
			if force {
				return nil, errInvalidParam("You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
			}
			days = *in.RecoveryWindowInDays
			if days < 7 || days > 30 {
				return nil, errInvalidParam("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
			}
		}
		if force {
			delete(s.secrets, sec.name)
			return map[string]any{"ARN": sec.arn, "Name": sec.name, "DeletionDate": epoch(now)}, nil
		}
		if !sec.deletedAt.IsZero() {
			return nil, errInvalidRequest("You can't perform this operation on the secret because it was already scheduled for deletion.")
		}
		sec.deletedAt = now.Add(time.Duration(days) * 24 * time.Hour)
		return map[string]any{"ARN": sec.arn, "Name": sec.name, "DeletionDate": epoch(sec.deletedAt)}, nil

	case OpRestoreSecret:
		sec := s.lookup(in.SecretID)
		if sec == nil {
			return nil, errNotFound("Secrets Manager can't find the specified secret.")
		}
		sec.deletedAt = time.Time{}
		return map[string]any{"ARN": sec.arn, "Name": sec.name}, nil
	}
	return nil, &apiErr{400, "UnknownOperationException", "operation not implemented by smtest"}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randAlnum(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
