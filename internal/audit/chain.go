package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// GenesisHash is the prevHash of the first record of every chain: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// chainName is the chain's display name in logs and errors: ScopePlatform for the platform
// chain. Tenant ids never contain '@', so it cannot be mistaken for a tenant called "platform".
func chainName(tenant string) string {
	if tenant == "" {
		return ScopePlatform
	}
	return tenant
}

// appendRecordJSON appends the canonical JSON of r. withHash selects the exported form (with
// "hash") over the hashed form (without). Keys are written in canonical (sorted) order by
// hand, which TestRecordEncodingMatchesGeneric checks against the generic encoder.
func appendRecordJSON(dst []byte, r *Record, withHash bool) ([]byte, error) {
	var err error
	str := func(key, val string) {
		if err != nil {
			return
		}
		dst = append(dst, key...)
		dst, err = appendString(dst, val)
	}
	str(`{"action":`, r.Action)
	str(`,"actor":{"sub":`, r.Actor.Sub)
	str(`,"tokenFp":`, r.Actor.TokenFP)
	dst = append(dst, `},"details":`...)
	if err == nil {
		if r.Details == nil {
			dst = append(dst, '{', '}')
		} else {
			dst, err = appendObject(dst, r.Details, 1)
		}
	}
	if withHash {
		str(`,"hash":`, r.Hash)
	}
	str(`,"id":`, r.ID)
	str(`,"outcome":`, r.Outcome)
	str(`,"prevHash":`, r.PrevHash)
	str(`,"reason":`, r.Reason)
	str(`,"requestId":`, r.RequestID)
	if err == nil {
		dst = append(dst, `,"seq":`...)
		dst, err = appendInt(dst, r.Seq)
	}
	str(`,"sessionId":`, r.SessionID)
	str(`,"source":{"ip":`, r.Source.IP)
	str(`,"origin":`, r.Source.Origin)
	str(`,"userAgent":`, r.Source.UserAgent)
	str(`},"target":{"id":`, r.Target.ID)
	str(`,"type":`, r.Target.Type)
	str(`},"tenant":`, r.Tenant)
	str(`,"time":`, r.Time.UTC().Format(timeLayout))
	if err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

// MarshalCanonical returns the canonical JSON of r including its hash: the export form, one
// NDJSON line without the newline.
func MarshalCanonical(r Record) ([]byte, error) {
	return appendRecordJSON(nil, &r, true)
}

// recordHash is hex(SHA-256(prevHash ‖ body)), body being the canonical JSON without "hash"
// (which contains prevHash too).
func recordHash(prevHash string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// ComputeHash returns the hash r must carry given its PrevHash and other fields.
func ComputeHash(r Record) (string, error) {
	body, err := appendRecordJSON(nil, &r, false)
	if err != nil {
		return "", err
	}
	return recordHash(r.PrevHash, body), nil
}

// wireRecord mirrors the canonical form for strict decoding.
type wireRecord struct {
	Action string `json:"action"`
	Actor  struct {
		Sub     string `json:"sub"`
		TokenFP string `json:"tokenFp"`
	} `json:"actor"`
	Details   map[string]any `json:"details"`
	Hash      *string        `json:"hash"`
	ID        string         `json:"id"`
	Outcome   string         `json:"outcome"`
	PrevHash  string         `json:"prevHash"`
	Reason    string         `json:"reason"`
	RequestID string         `json:"requestId"`
	Seq       int64          `json:"seq"`
	SessionID string         `json:"sessionId"`
	Source    struct {
		IP        string `json:"ip"`
		Origin    string `json:"origin"`
		UserAgent string `json:"userAgent"`
	} `json:"source"`
	Target struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"target"`
	Tenant string `json:"tenant"`
	Time   string `json:"time"`
}

// UnmarshalRecord decodes one record in canonical form (as stored or exported). It does not
// check the hash; Verify does. Detail numbers come back as float64.
func UnmarshalRecord(data []byte) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireRecord
	if err := dec.Decode(&w); err != nil {
		return Record{}, fmt.Errorf("%w: decode record: %v", ErrNotCanonical, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: trailing data after record", ErrNotCanonical)
	}
	t, err := time.Parse(timeLayout, w.Time)
	if err != nil {
		return Record{}, fmt.Errorf("%w: record time", ErrNotCanonical)
	}
	r := Record{
		Seq: w.Seq, ID: w.ID, Time: t.UTC(), Action: w.Action, Outcome: w.Outcome, Reason: w.Reason,
		Tenant:    w.Tenant,
		Actor:     Actor{Sub: w.Actor.Sub, TokenFP: w.Actor.TokenFP},
		Target:    Target{Type: w.Target.Type, ID: w.Target.ID},
		Source:    Source{IP: w.Source.IP, Origin: w.Source.Origin, UserAgent: w.Source.UserAgent},
		RequestID: w.RequestID, SessionID: w.SessionID, Details: w.Details, PrevHash: w.PrevHash,
	}
	if r.Details == nil {
		r.Details = map[string]any{}
	}
	if w.Hash != nil {
		r.Hash = *w.Hash
	}
	return r, nil
}

// template is a record's canonical body with holes for the two fields only the chain head
// decides: body = pre ‖ prevHash ‖ mid ‖ seq ‖ post. Callers build it before queueing, so the
// single writer goroutine only splices and hashes.
type template struct {
	rec            Record
	pre, mid, post []byte
}

func newTemplate(r Record) (*template, error) {
	t := &template{rec: r}
	var err error
	str := func(dst []byte, key, val string) []byte {
		if err != nil {
			return dst
		}
		dst = append(dst, key...)
		dst, err = appendString(dst, val)
		return dst
	}
	b := make([]byte, 0, 512)
	b = str(b, `{"action":`, r.Action)
	b = str(b, `,"actor":{"sub":`, r.Actor.Sub)
	b = str(b, `,"tokenFp":`, r.Actor.TokenFP)
	b = append(b, `},"details":`...)
	if err == nil {
		b, err = appendObject(b, r.Details, 1)
	}
	b = str(b, `,"id":`, r.ID)
	b = str(b, `,"outcome":`, r.Outcome)
	b = append(b, `,"prevHash":"`...)
	t.pre = b
	b = []byte(`"`)
	b = str(b, `,"reason":`, r.Reason)
	b = str(b, `,"requestId":`, r.RequestID)
	b = append(b, `,"seq":`...)
	t.mid = b
	b = str(nil, `,"sessionId":`, r.SessionID)
	b = str(b, `,"source":{"ip":`, r.Source.IP)
	b = str(b, `,"origin":`, r.Source.Origin)
	b = str(b, `,"userAgent":`, r.Source.UserAgent)
	b = str(b, `},"target":{"id":`, r.Target.ID)
	b = str(b, `,"type":`, r.Target.Type)
	b = str(b, `},"tenant":`, r.Tenant)
	b = str(b, `,"time":`, r.Time.UTC().Format(timeLayout))
	t.post = append(b, '}')
	if err != nil {
		return nil, err
	}
	return t, nil
}

// seal places the record after head and returns the stored row.
func (t *template) seal(head Head) (StoredRecord, error) {
	if !isHash(head.Hash) || head.Seq < 0 || head.Seq >= maxSafeInteger {
		return StoredRecord{}, fmt.Errorf("audit: chain %s has a corrupt head", chainName(t.rec.Tenant))
	}
	r := t.rec
	r.Seq, r.PrevHash = head.Seq+1, head.Hash
	body := make([]byte, 0, len(t.pre)+len(t.mid)+len(t.post)+64+20)
	body = append(body, t.pre...)
	body = append(body, r.PrevHash...)
	body = append(body, t.mid...)
	body = strconv.AppendInt(body, r.Seq, 10)
	body = append(body, t.post...)
	r.Hash = recordHash(r.PrevHash, body)
	return storedFrom(&r, body), nil
}

// isHash reports whether s is 64 lowercase hex digits.
func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func storedFrom(r *Record, body []byte) StoredRecord {
	return StoredRecord{
		Chain: r.Tenant, Seq: r.Seq, ID: r.ID, TimeMS: r.Time.UnixMilli(), Action: r.Action,
		Outcome: r.Outcome, ActorSub: r.Actor.Sub, PrevHash: r.PrevHash, Hash: r.Hash, Body: body,
	}
}
