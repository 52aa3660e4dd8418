package deploycheck

import (
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

const k8sDir = "deploy/kubernetes"

// k8sObjects decodes every manifest of deploy/kubernetes, by kind.
func k8sObjects(t *testing.T) map[string][]map[string]any {
	t.Helper()
	objs := map[string][]map[string]any{}
	for _, f := range deployFiles(t) {
		if !strings.HasPrefix(f, k8sDir+"/") || path.Ext(f) != ".yaml" {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			kind := getString(doc, "kind")
			if kind == "" {
				continue // flowgate.yaml: the configuration, not a manifest
			}
			objs[kind] = append(objs[kind], doc)
		}
	}
	return objs
}

func oneObject(t *testing.T, objs map[string][]map[string]any, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objs[kind] {
		if getString(o, "metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s %q in %s", kind, name, k8sDir)
	return nil
}

func TestKubernetesKustomizationListsEveryManifest(t *testing.T) {
	k := yamlDocs(t, k8sDir+"/kustomization.yaml")[0]
	listed := strs(getList(k, "resources"))
	for _, g := range getList(k, "configMapGenerator") {
		listed = append(listed, strs(getList(g, "files"))...)
	}
	for _, f := range deployFiles(t) {
		if !strings.HasPrefix(f, k8sDir+"/") || path.Base(f) == "kustomization.yaml" {
			continue
		}
		// A subdirectory is a kustomization of its own (monitoring/: needs the operator's CRDs).
		if dir := path.Dir(f); dir != k8sDir {
			sub := yamlDocs(t, dir+"/kustomization.yaml")[0]
			if !slices.Contains(strs(getList(sub, "resources")), path.Base(f)) {
				t.Errorf("%s is not in %s/kustomization.yaml", f, dir)
			}
			continue
		}
		if !slices.Contains(listed, path.Base(f)) {
			t.Errorf("%s is not in kustomization.yaml", f)
		}
	}
	for _, img := range getList(k, "images") {
		tag := getString(img, "newTag")
		if d := getString(img, "digest"); d == "" && !pinned(getString(img, "name")+":"+tag) {
			t.Errorf("kustomization image %v is not pinned", img)
		}
	}
	if getString(k, "namespace") != "flowgate" {
		t.Errorf("kustomization namespace %q", getString(k, "namespace"))
	}
}

func TestKubernetesNamespaceRestricted(t *testing.T) {
	ns := oneObject(t, k8sObjects(t), "Namespace", "flowgate")
	if getString(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "restricted" {
		t.Error("namespace does not enforce the restricted Pod Security Standard")
	}
}

func TestKubernetesServiceAccount(t *testing.T) {
	sa := oneObject(t, k8sObjects(t), "ServiceAccount", "flowgate")
	if b, set := getBool(sa, "automountServiceAccountToken"); !set || b {
		t.Error("ServiceAccount mounts a Kubernetes API token; the gateway never calls the API")
	}
	if !strings.HasPrefix(getString(sa, "metadata", "annotations", "eks.amazonaws.com/role-arn"), "arn:aws:iam::") {
		t.Error("ServiceAccount has no IRSA role annotation")
	}
}

// securityContext of a container merged over its pod's (the container's wins), as the kubelet
// applies it.
func effective(pod, ctr map[string]any, field ...string) any {
	if v := get(ctr, append([]string{"securityContext"}, field...)...); v != nil {
		return v
	}
	return get(pod, append([]string{"securityContext"}, field...)...)
}

func TestKubernetesDeploymentSecurity(t *testing.T) {
	objs := k8sObjects(t)
	cfg := loadConfig(t, k8sDir+"/flowgate.yaml", nil)
	dep := oneObject(t, objs, "Deployment", "flowgate")
	pod := getMap(dep, "spec", "template", "spec")

	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if b, _ := getBool(pod, f); b {
			t.Errorf("pod sets %s", f)
		}
	}
	if b, set := getBool(pod, "automountServiceAccountToken"); !set || b {
		t.Error("pod mounts a Kubernetes API token")
	}
	if getString(pod, "serviceAccountName") != "flowgate" {
		t.Error("pod does not run as the flowgate ServiceAccount")
	}

	var containers []map[string]any
	for _, c := range append(getList(pod, "initContainers"), getList(pod, "containers")...) {
		containers = append(containers, c.(map[string]any))
	}
	if len(containers) < 2 {
		t.Fatalf("%d containers", len(containers))
	}
	for _, c := range containers {
		name := getString(c, "name")
		if b, _ := effective(pod, c, "runAsNonRoot").(bool); !b {
			t.Errorf("%s: runAsNonRoot is not true", name)
		}
		if uid, _ := effective(pod, c, "runAsUser").(int); uid == 0 {
			t.Errorf("%s: runAsUser is 0 or unset", name)
		}
		if b, set := getBool(c, "securityContext", "readOnlyRootFilesystem"); !set || !b {
			t.Errorf("%s: readOnlyRootFilesystem is not true", name)
		}
		if b, set := getBool(c, "securityContext", "allowPrivilegeEscalation"); !set || b {
			t.Errorf("%s: allowPrivilegeEscalation is not false", name)
		}
		if b, _ := getBool(c, "securityContext", "privileged"); b {
			t.Errorf("%s: privileged", name)
		}
		if !slices.Contains(strs(getList(c, "securityContext", "capabilities", "drop")), "ALL") {
			t.Errorf("%s: capabilities do not drop ALL", name)
		}
		if add := getList(c, "securityContext", "capabilities", "add"); len(add) > 0 {
			t.Errorf("%s: adds capabilities %v", name, add)
		}
		if typ, _ := effective(pod, c, "seccompProfile", "type").(string); typ != "RuntimeDefault" {
			t.Errorf("%s: seccompProfile %q, want RuntimeDefault", name, typ)
		}
		for _, r := range []string{"requests", "limits"} {
			if getString(c, "resources", r, "memory") == "" || get(c, "resources", r, "cpu") == nil {
				t.Errorf("%s: resources.%s lacks cpu or memory", name, r)
			}
		}
		image := getString(c, "image")
		if !pinned(image) {
			t.Errorf("%s: image %q is not pinned", name, image)
		}
	}

	gw := containers[len(containers)-1]
	if getString(gw, "name") != "flowgate" {
		t.Fatalf("last container is %q", getString(gw, "name"))
	}
	ports := map[string]int{}
	for _, p := range getList(gw, "ports") {
		n, _ := getInt(p, "containerPort")
		ports[getString(p, "name")] = n
	}
	if ports["ws"] != 8080 || ports["ops"] != 9090 {
		t.Errorf("container ports %v, want ws 8080 and ops 9090", ports)
	}
	if !strings.HasSuffix(cfg.Ops.Addr, ":9090") || !strings.HasSuffix(cfg.Server.Addr, ":8080") {
		t.Errorf("config listens on %s / ops %s, not the container ports", cfg.Server.Addr, cfg.Ops.Addr)
	}
	if cfg.Ops.Pprof {
		t.Error("ops.pprof is on in the production configuration")
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		p := getMap(gw, probe, "httpGet")
		if getString(p, "path") != want || getString(p, "port") != "ops" {
			t.Errorf("%s = %v, want GET %s on the ops port", probe, p, want)
		}
	}
	preStop, _ := getInt(gw, "lifecycle", "preStop", "sleep", "seconds")
	if preStop <= 0 {
		t.Error("no preStop sleep")
	}
	grace, _ := getInt(pod, "terminationGracePeriodSeconds")
	if time.Duration(grace)*time.Second <= cfg.Shutdown.Grace+time.Duration(preStop)*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d <= shutdown.grace %s + preStop %ds", grace, cfg.Shutdown.Grace, preStop)
	}
	checkInvocation(t, "deployment args", strs(getList(gw, "args")))

	// Every file the configuration names is on a read-only mount; the writable mounts are
	// /data (state and task directories) and /tmp only.
	mounts := map[string]bool{}
	for _, m := range getList(gw, "volumeMounts") {
		ro, _ := getBool(m, "readOnly")
		mounts[getString(m, "mountPath")] = ro
	}
	for key, file := range map[string]string{
		"auth.signing.key_file": cfg.Auth.Signing.KeyFile, "secrets.fingerprint_key_file": cfg.Secrets.FingerprintKeyFile,
		"audit.checkpoint_key_file": cfg.Audit.CheckpointKeyFile,
	} {
		ro, ok := mounts[path.Dir(file)]
		if !ok || !ro {
			t.Errorf("%s %s is not on a read-only volume mount", key, file)
		}
	}
	for p, ro := range mounts {
		if !ro && p != "/data" && p != "/tmp" {
			t.Errorf("writable mount %s besides /data and /tmp", p)
		}
	}
	if cfg.DataDir != "/data" || !strings.HasPrefix(cfg.Engine.WorkdirRoot, "/data/") {
		t.Errorf("data_dir %s / engine.workdir_root %s are not under the /data volume", cfg.DataDir, cfg.Engine.WorkdirRoot)
	}
	// The audit checkpoint key lives in its own Secret, apart from the database and the other keys.
	var auditSecret string
	for _, v := range getList(pod, "volumes") {
		if getString(v, "name") == "audit-checkpoint-key" {
			auditSecret = getString(v, "secret", "secretName")
		}
	}
	if auditSecret == "" || strings.Contains(auditSecret, "db") {
		t.Errorf("audit checkpoint key Secret %q", auditSecret)
	}
	known := envKeys()
	for _, e := range getList(gw, "env") {
		n := getString(e, "name")
		if strings.HasPrefix(n, "FLOWGATE_") && !known[n] {
			t.Errorf("env %s is not a configuration key", n)
		}
		if v := getString(e, "value"); strings.Contains(strings.ToLower(n), "password") || strings.Contains(v, "://") && strings.Contains(v, "@") {
			t.Errorf("env %s carries a secret value inline", n)
		}
	}
}

func TestKubernetesServices(t *testing.T) {
	objs := k8sObjects(t)
	public := oneObject(t, objs, "Service", "flowgate")
	for _, p := range getList(public, "spec", "ports") {
		if tp := getString(p, "targetPort"); tp != "ws" {
			t.Errorf("public Service exposes targetPort %v", get(p, "targetPort"))
		}
	}
	if typ := getString(public, "spec", "type"); typ == "NodePort" {
		t.Error("public Service is a NodePort")
	}
	ops := oneObject(t, objs, "Service", "flowgate-ops")
	if getString(ops, "spec", "type") != "ClusterIP" {
		t.Error("ops Service must be ClusterIP (cluster-internal)")
	}
	for _, p := range getList(ops, "spec", "ports") {
		if getString(p, "targetPort") != "ops" {
			t.Errorf("ops Service exposes %v", get(p, "targetPort"))
		}
	}

	hpa := oneObject(t, objs, "HorizontalPodAutoscaler", "flowgate")
	if getString(hpa, "spec", "scaleTargetRef", "name") != "flowgate" {
		t.Error("HPA does not scale the flowgate Deployment")
	}
	if n, _ := getInt(hpa, "spec", "minReplicas"); n < 2 {
		t.Errorf("HPA minReplicas %d, want >= 2", n)
	}
	pdb := oneObject(t, objs, "PodDisruptionBudget", "flowgate")
	dep := oneObject(t, objs, "Deployment", "flowgate")
	if !sameLabels(getMap(pdb, "spec", "selector", "matchLabels"), getMap(dep, "spec", "selector", "matchLabels")) {
		t.Error("PDB does not select the Deployment's pods")
	}
}

// The ServiceMonitor (DESIGN §19, for the Prometheus Operator) scrapes the ops Service's
// named port at /metrics: it selects exactly that Service, in flowgate's namespace.
func TestKubernetesServiceMonitor(t *testing.T) {
	objs := k8sObjects(t)
	sm := oneObject(t, objs, "ServiceMonitor", "flowgate")
	ops := oneObject(t, objs, "Service", "flowgate-ops")
	if !sameLabels(getMap(sm, "spec", "selector", "matchLabels"), getMap(ops, "metadata", "labels")) {
		t.Error("the ServiceMonitor does not select the flowgate-ops Service by its labels")
	}
	if pub := oneObject(t, objs, "Service", "flowgate"); sameLabels(getMap(sm, "spec", "selector", "matchLabels"), getMap(pub, "metadata", "labels")) {
		t.Error("the ServiceMonitor also selects the public Service")
	}
	ns := getString(oneObject(t, objs, "Namespace", "flowgate"), "metadata", "name")
	if got := strs(getList(sm, "spec", "namespaceSelector", "matchNames")); !slices.Equal(got, []string{ns}) {
		t.Errorf("namespaceSelector %v; want [%s]", got, ns)
	}
	eps := getList(sm, "spec", "endpoints")
	portName := getString(getList(ops, "spec", "ports")[0], "name")
	if len(eps) != 1 || getString(eps[0], "port") != portName || getString(eps[0], "path") != "/metrics" {
		t.Errorf("endpoints %v; want port %s, path /metrics", eps, portName)
	}
}

func sameLabels(a, b map[string]any) bool {
	if len(a) == 0 || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesNetworkPolicy(t *testing.T) {
	objs := k8sObjects(t)
	deny := oneObject(t, objs, "NetworkPolicy", "default-deny")
	if len(getMap(deny, "spec", "podSelector")) != 0 || len(getList(deny, "spec", "ingress")) > 0 || len(getList(deny, "spec", "egress")) > 0 {
		t.Error("default-deny does not deny everything by default")
	}
	np := oneObject(t, objs, "NetworkPolicy", "flowgate")
	if types := strs(getList(np, "spec", "policyTypes")); !slices.Contains(types, "Ingress") || !slices.Contains(types, "Egress") {
		t.Errorf("policyTypes %v", types)
	}
	for _, rule := range getList(np, "spec", "ingress") {
		from := getList(rule, "from")
		if len(from) == 0 {
			t.Error("an ingress rule admits every source")
		}
		for _, p := range getList(rule, "ports") {
			if getString(p, "port") != "ops" {
				continue
			}
			for _, f := range from {
				if getMap(f, "ipBlock") != nil || getMap(f, "podSelector") == nil {
					t.Errorf("the ops port is reachable from %v: only Prometheus pods may reach it", f)
				}
			}
		}
	}
	egressPorts := map[int]bool{}
	for _, rule := range getList(np, "spec", "egress") {
		for _, p := range getList(rule, "ports") {
			n, _ := getInt(p, "port")
			egressPorts[n] = true
		}
		for _, to := range getList(rule, "to") {
			if cidr := getString(to, "ipBlock", "cidr"); cidr == "0.0.0.0/0" {
				if !slices.Contains(strs(getList(to, "ipBlock", "except")), "169.254.0.0/16") {
					t.Error("egress to 0.0.0.0/0 does not exclude the metadata service (169.254.0.0/16)")
				}
			}
		}
	}
	for _, p := range []int{53, 5432, 6379, 443} {
		if !egressPorts[p] {
			t.Errorf("no egress rule for port %d", p)
		}
	}
}
