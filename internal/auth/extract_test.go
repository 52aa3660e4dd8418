package auth

import (
	"errors"
	"net/http/httptest"
	"testing"
)

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name       string
		url        string
		headers    map[string][]string
		allowQuery bool
		want       Credential
		wantErr    string // reason or "conflict"
	}{
		{"bearer", "/ws", map[string][]string{"Authorization": {"Bearer abc"}}, false, Credential{"abc", SourceHeader}, ""},
		{"subprotocol", "/ws", map[string][]string{"Sec-Websocket-Protocol": {"flowgate.v1, flowgate.bearer.abc"}}, false, Credential{"abc", SourceSubprotocol}, ""},
		{"ticket", "/ws?ticket=t1", nil, false, Credential{"t1", SourceTicket}, ""},
		{"query allowed", "/?token=abc", nil, true, Credential{"abc", SourceQuery}, ""},
		{"query refused", "/?token=abc", nil, false, Credential{}, ReasonQueryDisabled},
		{"query ignored beside header", "/?token=zzz", map[string][]string{"Authorization": {"Bearer abc"}}, false, Credential{"abc", SourceHeader}, ""},
		{"same token twice is fine", "/?token=abc", map[string][]string{"Authorization": {"Bearer abc"}}, true, Credential{"abc", SourceHeader}, ""},
		{"two different tokens", "/?token=zzz", map[string][]string{"Authorization": {"Bearer abc"}}, true, Credential{}, "conflict"},
		{"header and subprotocol differ", "/ws", map[string][]string{"Authorization": {"Bearer abc"}, "Sec-Websocket-Protocol": {"flowgate.v1, flowgate.bearer.x"}}, false, Credential{}, "conflict"},
		{"two query tokens", "/?token=a&token=b", nil, true, Credential{}, "conflict"},
		{"ticket and token", "/?ticket=a&token=a", nil, true, Credential{}, "conflict"},
		{"two authorization headers", "/", map[string][]string{"Authorization": {"Bearer a", "Bearer a"}}, false, Credential{}, "conflict"},
		{"basic auth", "/", map[string][]string{"Authorization": {"Basic Zm9v"}}, false, Credential{}, ReasonMalformed},
		{"nothing", "/ws", nil, true, Credential{}, ReasonMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.url, nil)
			for k, vs := range tt.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			got, err := FromRequest(r, "flowgate.bearer.", tt.allowQuery)
			switch {
			case tt.wantErr == "conflict":
				if !errors.Is(err, ErrConflictingCredentials) {
					t.Fatalf("err = %v; want conflict", err)
				}
			case tt.wantErr != "":
				if ReasonOf(err) != tt.wantErr {
					t.Fatalf("err = %v; want %s", err, tt.wantErr)
				}
			default:
				if err != nil || got != tt.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
			}
		})
	}
}
