package validation

import "github.com/flowgate/flowgate/internal/protocol"

// TaskRequest is a status, cancel or subscribe message that passed validation.
type TaskRequest struct {
	Type      string // protocol.TypeStatus, TypeCancel or TypeSubscribe
	TaskID    string
	AfterSeq  int64 // subscribe only; 0 replays from the first event
	RequestID string
}

type taskRefInput struct {
	TaskID    *string `json:"taskId" validate:"required,taskid"`
	AfterSeq  *int64  `json:"afterSeq" validate:"omitempty,min=0"`
	RequestID *string `json:"requestId" validate:"omitempty,requestid"`
}

// TaskRef validates a status, cancel or subscribe message.
func (v *Validator) TaskRef(m *protocol.TaskRef) (TaskRequest, error) {
	in := taskRefInput{TaskID: m.TaskID, AfterSeq: m.AfterSeq, RequestID: m.RequestID}
	errs := fieldErrors{}
	v.check(&params{}, &in, errs)
	if err := errs.err(); err != nil {
		return TaskRequest{}, err
	}
	req := TaskRequest{Type: m.Type, TaskID: *in.TaskID}
	if in.AfterSeq != nil {
		req.AfterSeq = *in.AfterSeq
	}
	if in.RequestID != nil {
		req.RequestID = *in.RequestID
	}
	return req, nil
}

// ReauthRequest is a reauth message that passed validation. The token is only bounded here;
// the auth verifier parses it.
type ReauthRequest struct {
	Token     string
	RequestID string
}

type reauthInput struct {
	Token     *string `json:"token" validate:"required,nonempty,maxbytes=8192"`
	RequestID *string `json:"requestId" validate:"omitempty,requestid"`
}

// Reauth validates a reauth message. Messages never contain the token.
func (v *Validator) Reauth(m *protocol.Reauth) (ReauthRequest, error) {
	in := reauthInput{Token: m.Token, RequestID: m.RequestID}
	errs := fieldErrors{}
	v.check(&params{}, &in, errs)
	if err := errs.err(); err != nil {
		return ReauthRequest{}, err
	}
	req := ReauthRequest{Token: *in.Token}
	if in.RequestID != nil {
		req.RequestID = *in.RequestID
	}
	return req, nil
}

// SimpleRequest is a tasks or ping message that passed validation.
type SimpleRequest struct {
	Type      string
	RequestID string
}

type simpleInput struct {
	RequestID *string `json:"requestId" validate:"omitempty,requestid"`
}

// Simple validates a tasks or ping message.
func (v *Validator) Simple(m *protocol.Simple) (SimpleRequest, error) {
	in := simpleInput{RequestID: m.RequestID}
	errs := fieldErrors{}
	v.check(&params{}, &in, errs)
	if err := errs.err(); err != nil {
		return SimpleRequest{}, err
	}
	req := SimpleRequest{Type: m.Type}
	if in.RequestID != nil {
		req.RequestID = *in.RequestID
	}
	return req, nil
}
