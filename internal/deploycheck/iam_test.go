package deploycheck

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

type policy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    any
		Resource  any
		Principal any
		Condition map[string]map[string]any
	}
}

func readPolicy(t *testing.T, rel string) policy {
	t.Helper()
	var p policy
	if err := json.Unmarshal(readFile(t, rel), &p); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("%s: version %q, %d statements", rel, p.Version, len(p.Statement))
	}
	return p
}

func list(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		return strs(x)
	}
	return nil
}

const tenantSecrets = ":secret:flowgate/tenants/*"

func checkPolicy(t *testing.T, rel string, allowed []string, forbidden []string) {
	t.Helper()
	p := readPolicy(t, rel)
	for _, s := range p.Statement {
		actions := list(s.Action)
		for _, a := range actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s %s: wildcard action %s", rel, s.Sid, a)
			}
			if s.Effect == "Allow" && !slices.Contains(allowed, a) {
				t.Errorf("%s %s: allows %s", rel, s.Sid, a)
			}
		}
		for _, r := range list(s.Resource) {
			if r == "*" {
				t.Errorf("%s %s: Resource *", rel, s.Sid)
			}
			if strings.HasPrefix(r, "arn:aws:secretsmanager:") && !strings.HasSuffix(r, tenantSecrets) {
				t.Errorf("%s %s: secret resource %s is not the tenant prefix", rel, s.Sid, r)
			}
		}
		if strings.HasPrefix(actions[0], "kms:") && s.Condition["StringEquals"]["kms:ViaService"] == nil {
			t.Errorf("%s %s: KMS use not limited to Secrets Manager", rel, s.Sid)
		}
	}
	for _, f := range forbidden {
		for _, s := range p.Statement {
			if s.Effect == "Allow" && slices.Contains(list(s.Action), f) {
				t.Errorf("%s allows %s", rel, f)
			}
		}
	}
}

func TestIAMGatewayPolicy(t *testing.T) {
	// The serving gateways only read tenant keys.
	checkPolicy(t, "deploy/iam/gateway-policy.json",
		[]string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt"},
		[]string{"secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret"})
	p := readPolicy(t, "deploy/iam/gateway-policy.json")
	if p.Statement[0].Condition["Null"]["secretsmanager:ResourceTag/flowgate:tenant"] != "false" {
		t.Error("gateway may read secrets without the flowgate:tenant tag")
	}
}

func TestIAMAdminPolicy(t *testing.T) {
	// Key management writes; it never reads a key back.
	checkPolicy(t, "deploy/iam/admin-policy.json",
		[]string{"secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret",
			"secretsmanager:TagResource", "secretsmanager:RestoreSecret", "secretsmanager:DescribeSecret",
			"kms:GenerateDataKey", "kms:Decrypt"},
		[]string{"secretsmanager:GetSecretValue", "secretsmanager:UntagResource", "secretsmanager:PutResourcePolicy"})
	p := readPolicy(t, "deploy/iam/admin-policy.json")
	for _, s := range p.Statement {
		if slices.Contains(list(s.Action), "secretsmanager:CreateSecret") && s.Condition["Null"]["aws:RequestTag/flowgate:tenant"] != "false" {
			t.Error("CreateSecret does not require the flowgate:tenant tag")
		}
	}
}

func TestIAMTrustPolicy(t *testing.T) {
	p := readPolicy(t, "deploy/iam/gateway-trust-policy.json")
	sa := oneObject(t, k8sObjects(t), "ServiceAccount", "flowgate")
	k := yamlDocs(t, k8sDir+"/kustomization.yaml")[0]
	want := "system:serviceaccount:" + getString(k, "namespace") + ":" + getString(sa, "metadata", "name")
	var found bool
	for _, s := range p.Statement {
		if !slices.Contains(list(s.Action), "sts:AssumeRoleWithWebIdentity") {
			t.Errorf("trust statement %s: %v", s.Sid, s.Action)
		}
		for k, v := range s.Condition["StringEquals"] {
			if strings.HasSuffix(k, ":sub") && v == want {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("trust policy does not pin the subject to %s", want)
	}
}
