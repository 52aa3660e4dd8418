package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A manifest is a signed list of every chain and its newest checkpointed head, written with
// each checkpoint round (DESIGN §16). A chain's own checkpoints cannot show that the whole
// chain, or its tail together with the checkpoints over it, was deleted; the manifest can:
// Verify requires every chain it lists to still reach the listed head.
//
// Manifests are linked (each names the hash of the one before) and only the newest
// ManifestsKept stay in the database; each is also logged, like checkpoints, so a rollback to
// an older one is visible against the log's copy.

// ManifestsKept is how many manifests the database keeps.
const ManifestsKept = 10

// manifestDomain separates manifest signatures from checkpoint signatures.
const manifestDomain = "flowgate-audit-manifest-v1\n"

// ManifestEntry is one chain's head as of its newest checkpoint.
type ManifestEntry struct {
	Chain string `json:"chain"`
	Seq   int64  `json:"seq"`
	Hash  string `json:"hash"`
}

// StoredManifest is one manifest row. Body is the canonical JSON of {seq, time, chains} and
// Hash = SHA-256(PrevHash ‖ Body), hex; the signature covers Hash.
type StoredManifest struct {
	Seq       int64
	TimeMS    int64
	PrevHash  string
	Body      []byte
	Hash      string
	KeyID     string
	Signature string
}

type manifestBody struct {
	Seq    int64           `json:"seq"`
	Time   string          `json:"time"`
	Chains []ManifestEntry `json:"chains"`
}

func manifestSignedMessage(m StoredManifest) ([]byte, error) {
	return AppendCanonical([]byte(manifestDomain), map[string]any{"hash": m.Hash, "keyId": m.KeyID, "seq": m.Seq})
}

func manifestHash(prev string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// writeManifest records a manifest after a checkpoint round that signed cps: the previous
// manifest's entries (a chain stays listed even when it is no longer found: that is what
// Verify must report), updated with cps, and every checkpointed chain not yet listed. Two
// processes racing for the same manifest seq store one; the other's round is simply not
// listed until the next.
func (r *Recorder) writeManifest(ctx context.Context, states []ChainState, cps []Checkpoint) error {
	prev, err := r.st.AuditManifests(ctx, 1)
	if err != nil {
		return err
	}
	entries := map[string]ManifestEntry{}
	seq, prevHash := int64(1), GenesisHash
	if len(prev) == 1 {
		b, err := decodeManifest(prev[0])
		if err != nil {
			return err
		}
		for _, e := range b.Chains {
			entries[e.Chain] = e
		}
		seq, prevHash = prev[0].Seq+1, prev[0].Hash
	}
	for _, cp := range cps {
		entries[cp.Chain] = ManifestEntry{Chain: cp.Chain, Seq: cp.Seq, Hash: cp.Hash}
	}
	for _, s := range states {
		if _, ok := entries[s.Chain]; ok || s.CheckpointSeq == 0 {
			continue
		}
		cp, err := r.findCheckpointIn(ctx, s.Chain, s.CheckpointSeq)
		if err != nil {
			return err
		}
		entries[s.Chain] = ManifestEntry{Chain: s.Chain, Seq: cp.Seq, Hash: cp.Hash}
	}
	list := make([]ManifestEntry, 0, len(entries))
	for _, s := range states {
		if e, ok := entries[s.Chain]; ok {
			list = append(list, e)
			delete(entries, s.Chain)
		}
	}
	for _, e := range entries { // listed before, gone now: kept, sorted below
		list = append(list, e)
	}
	sortEntries(list)
	now := r.clock().UTC().Truncate(time.Millisecond)
	// The hash covers the stored bytes as they are: no canonical form is needed.
	body, err := json.Marshal(manifestBody{Seq: seq, Time: now.Format(timeLayout), Chains: list})
	if err != nil {
		return err
	}
	m := StoredManifest{Seq: seq, TimeMS: now.UnixMilli(), PrevHash: prevHash, Body: body, Hash: manifestHash(prevHash, body)}
	m.KeyID = KeyID(r.signer.Public().(ed25519.PublicKey))
	msg, err := manifestSignedMessage(m)
	if err != nil {
		return err
	}
	m.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(r.signer, msg))
	stored, err := r.st.AddAuditManifest(ctx, m, ManifestsKept)
	if err != nil {
		return fmt.Errorf("audit: store manifest: %w", err)
	}
	if stored {
		r.logger.Info("audit manifest", "seq", m.Seq, "chains", len(list), "hash", m.Hash,
			"prev_hash", m.PrevHash, "key_id", m.KeyID, "signature", m.Signature)
	}
	return nil
}

func (r *Recorder) findCheckpointIn(ctx context.Context, chain string, seq int64) (Checkpoint, error) {
	cps, err := r.st.AuditCheckpoints(ctx, chain, KindCheckpoint, seq-1, 1)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	if len(cps) != 1 || cps[0].Seq != seq {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint at seq %d of chain %s vanished", seq, chainName(chain))
	}
	return cps[0], nil
}

func sortEntries(list []ManifestEntry) {
	slices.SortFunc(list, func(a, b ManifestEntry) int { return strings.Compare(a.Chain, b.Chain) })
}

var errBadManifest = errors.New("malformed manifest")

func decodeManifest(m StoredManifest) (manifestBody, error) {
	var b manifestBody
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return b, fmt.Errorf("audit: manifest %d: %w: %v", m.Seq, errBadManifest, err)
	}
	if b.Seq != m.Seq {
		return b, fmt.Errorf("audit: manifest %d: %w: body says seq %d", m.Seq, errBadManifest, b.Seq)
	}
	return b, nil
}

// checkManifest verifies the newest manifest: its signature and hash, then that every chain it
// lists is still there and still holds the listed (seq, hash), unless pruning anchored the
// chain past it. It returns one problem per chain (keyed by chain), or a problem with the
// manifest itself under the platform chain. No manifest (no signing key, or none written yet)
// checks nothing.
func (r *Reader) checkManifest(ctx context.Context, states []ChainState) (map[string]*Problem, error) {
	ms, err := r.st.AuditManifests(ctx, 1)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: read manifests: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	m := ms[0]
	bad := func(detail string) map[string]*Problem {
		return map[string]*Problem{"": {Tenant: "", Seq: 0, Kind: ProblemBadSignature, Detail: fmt.Sprintf("manifest %d: %s", m.Seq, detail)}}
	}
	if manifestHash(m.PrevHash, m.Body) != m.Hash {
		return bad("its hash does not match its content"), nil
	}
	if err := checkManifestSignature(r.keys, m); err != nil {
		return bad(err.Error()), nil
	}
	b, err := decodeManifest(m)
	if err != nil {
		return bad(err.Error()), nil
	}
	have := make(map[string]ChainState, len(states))
	for _, s := range states {
		have[s.Chain] = s
	}
	out := map[string]*Problem{}
	for _, e := range b.Chains {
		s, ok := have[e.Chain]
		switch {
		case !ok:
			out[e.Chain] = &Problem{Tenant: e.Chain, Kind: ProblemChainMissing,
				Detail: fmt.Sprintf("the signed manifest %d lists this chain at seq %d; it is gone (records, checkpoints and head deleted)", m.Seq, e.Seq)}
		case s.AnchorSeq >= e.Seq:
			// Pruned past the listed head: the anchor (signed) now vouches for the chain.
		case s.Head.Seq < e.Seq || s.MaxSeq < e.Seq:
			end := min(s.Head.Seq, s.MaxSeq)
			out[e.Chain] = &Problem{Tenant: e.Chain, Seq: end + 1, Kind: ProblemDeleted,
				Detail: fmt.Sprintf("the signed manifest %d lists this chain at seq %d; it ends at %d", m.Seq, e.Seq, end)}
		default:
			rows, err := r.st.AuditRecords(ctx, e.Chain, e.Seq-1, 1)
			if err != nil {
				return nil, fmt.Errorf("audit: verify: %w", err)
			}
			if len(rows) == 0 || rows[0].Seq != e.Seq {
				out[e.Chain] = &Problem{Tenant: e.Chain, Seq: e.Seq, Kind: ProblemDeleted,
					Detail: fmt.Sprintf("the record the signed manifest %d lists is gone", m.Seq)}
			} else if rows[0].Hash != e.Hash {
				out[e.Chain] = &Problem{Tenant: e.Chain, Seq: e.Seq, Kind: ProblemCheckpointMismatch,
					Detail: fmt.Sprintf("the record's hash differs from the one the signed manifest %d lists", m.Seq)}
			}
		}
	}
	return out, nil
}

func checkManifestSignature(keys map[string]ed25519.PublicKey, m StoredManifest) error {
	msg, err := manifestSignedMessage(m)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSignature, err)
	}
	return verifySignature(keys, m.KeyID, m.Signature, msg)
}
