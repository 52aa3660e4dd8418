package deploycheck

import (
	"encoding/json"
	"path"
	"strings"
	"testing"
)

// Every file under deploy/ is of a kind these tests know, and every YAML and JSON file parses.
func TestDeployFilesParse(t *testing.T) {
	for _, f := range deployFiles(t) {
		switch ext := path.Ext(f); {
		case ext == ".yaml" || ext == ".yml":
			if docs := yamlDocs(t, f); len(docs) == 0 {
				t.Errorf("%s: no YAML document", f)
			}
		case ext == ".json":
			var v any
			if err := json.Unmarshal(readFile(t, f), &v); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		case ext == ".conf", ext == ".service", ext == ".example", ext == ".sh", path.Base(f) == ".gitignore":
			if len(strings.TrimSpace(string(readFile(t, f)))) == 0 {
				t.Errorf("%s is empty", f)
			}
		default:
			t.Errorf("%s: unknown kind of deploy file (teach internal/deploycheck to check it)", f)
		}
	}
}

// No file under deploy/ carries a secret value.
func TestDeployFilesHoldNoSecrets(t *testing.T) {
	for _, f := range deployFiles(t) {
		text := string(readFile(t, f))
		for _, bad := range []string{"BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY", "sk-ant-", "AKIA", "eyJhbGci"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
	}
}
