package deploy

// The Helm chart (deploy/helm/keep): helm lint and helm template with the
// default values and with the optional parts turned on, the invariants of
// the rendered manifests, and the chart's join step and probes run for
// real against keep nodes on 127.0.0.x. Kubernetes itself cannot run here:
// what the test runs is what the chart tells Kubernetes to run.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/server"
	"github.com/keep-kms/keep/test/testnode"
)

// helmModule is the helm command at a pinned version, installed from the
// Go module proxy when no helm is on PATH or in $(go env GOPATH)/bin.
// Building it takes about 340 s of CPU (5-6 minutes on CI's two cores, once
// per machine: later runs find it in GOPATH/bin).
const helmModule = "helm.sh/helm/v4/cmd/helm@v4.3.2"

// TestCIInstallsHelm checks that CI builds, ahead of the tests, the helm
// that helmBinary would install: .ci/run starts it in the background so
// that its build overlaps the analyzers.
func TestCIInstallsHelm(t *testing.T) {
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "go install "+helmModule) {
		t.Errorf(".ci/run does not run go install %s", helmModule)
	}
}

// helmRelease and helmNamespace name the rendered release.
const (
	helmRelease   = "kms"
	helmNamespace = "vault"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns a helm command: one on PATH, else one in
// $(go env GOPATH)/bin, else the pinned one, installed with go install.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if p, err := exec.LookPath("helm"); err == nil {
			helmPath = p
			return
		}
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			helmErr = fmt.Errorf("go env GOPATH: %w", err)
			return
		}
		gobin := filepath.Join(strings.Fields(string(out))[0], "bin")
		if gb, err := exec.Command("go", "env", "GOBIN").Output(); err == nil && strings.TrimSpace(string(gb)) != "" {
			gobin = strings.TrimSpace(string(gb))
		}
		p := filepath.Join(gobin, "helm")
		if _, err := os.Stat(p); err == nil {
			helmPath = p
			return
		}
		start := time.Now()
		cmd := exec.Command("go", "install", helmModule)
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("go install %s: %w\n%s", helmModule, err, testnode.Tail(string(out), 4096))
			return
		}
		fmt.Fprintf(os.Stderr, "helm_test: go install %s took %v\n", helmModule, time.Since(start).Round(time.Second))
		helmPath = p
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// chartDir is the chart's directory.
func chartDir(t *testing.T) string {
	t.Helper()
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "helm", "keep")
}

// helm runs helm with args and returns its output; err is set if it failed.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helmBinary(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// The parts of Kubernetes objects that the invariants look at.
type (
	object struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Metadata   metadata `yaml:"metadata"`
	}
	metadata struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	statefulSet struct {
		Spec struct {
			Replicas            int      `yaml:"replicas"`
			ServiceName         string   `yaml:"serviceName"`
			PodManagementPolicy string   `yaml:"podManagementPolicy"`
			Selector            selector `yaml:"selector"`
			Template            podTemplate
		} `yaml:"spec"`
	}
	podTemplate struct {
		Metadata metadata `yaml:"metadata"`
		Spec     podSpec  `yaml:"spec"`
	}
	podSpec struct {
		RestartPolicy string      `yaml:"restartPolicy"`
		Containers    []container `yaml:"containers"`
		Volumes       []volume    `yaml:"volumes"`
		Affinity      struct {
			PodAntiAffinity struct {
				Required  []affinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
				Preferred []struct {
					Weight int          `yaml:"weight"`
					Term   affinityTerm `yaml:"podAffinityTerm"`
				} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
			} `yaml:"podAntiAffinity"`
		} `yaml:"affinity"`
	}
	volume struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	}
	volumeMount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	}
	affinityTerm struct {
		TopologyKey   string   `yaml:"topologyKey"`
		LabelSelector selector `yaml:"labelSelector"`
	}
	container struct {
		Name         string        `yaml:"name"`
		Args         []string      `yaml:"args"`
		Command      []string      `yaml:"command"`
		Env          []envVar      `yaml:"env"`
		VolumeMounts []volumeMount `yaml:"volumeMounts"`
		Ports        []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		StartupProbe   *probe `yaml:"startupProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
	}
	envVar struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	probe struct {
		HTTPGet *struct {
			Scheme string `yaml:"scheme"`
			Path   string `yaml:"path"`
			Port   string `yaml:"port"`
		} `yaml:"httpGet"`
		PeriodSeconds    int `yaml:"periodSeconds"`
		FailureThreshold int `yaml:"failureThreshold"`
		TimeoutSeconds   int `yaml:"timeoutSeconds"`
	}
	service struct {
		Spec struct {
			ClusterIP                string            `yaml:"clusterIP"`
			PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
			Selector                 map[string]string `yaml:"selector"`
			Ports                    []struct {
				Name string `yaml:"name"`
				Port int    `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	pdb struct {
		Spec struct {
			MaxUnavailable *int     `yaml:"maxUnavailable"`
			MinAvailable   *int     `yaml:"minAvailable"`
			Selector       selector `yaml:"selector"`
		} `yaml:"spec"`
	}
	job struct {
		Spec struct {
			Template podTemplate `yaml:"template"`
		} `yaml:"spec"`
	}
	certificate struct {
		Spec struct {
			SecretName string   `yaml:"secretName"`
			DNSNames   []string `yaml:"dnsNames"`
		} `yaml:"spec"`
	}
	serviceMonitor struct {
		Spec struct {
			Selector  selector `yaml:"selector"`
			Endpoints []struct {
				Port   string `yaml:"port"`
				Scheme string `yaml:"scheme"`
				Path   string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	configMap struct {
		Data map[string]string `yaml:"data"`
	}
)

// rendered is the output of helm template: the text and each object by
// kind and name.
type rendered struct {
	text    string
	objects map[string]map[string]yaml.Node // kind → name → document
}

// render runs helm template on the chart with the values set.
func render(t *testing.T, set ...string) (*rendered, error) {
	t.Helper()
	args := []string{"template", helmRelease, chartDir(t), "--namespace", helmNamespace}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	r := &rendered{text: out, objects: map[string]map[string]yaml.Node{}}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered manifests do not parse: %v", err)
		}
		var o object
		if err := doc.Decode(&o); err != nil {
			t.Fatalf("rendered object: %v", err)
		}
		if o.Kind == "" {
			continue // an empty document
		}
		if r.objects[o.Kind] == nil {
			r.objects[o.Kind] = map[string]yaml.Node{}
		}
		if _, dup := r.objects[o.Kind][o.Metadata.Name]; dup {
			t.Errorf("two %s named %s", o.Kind, o.Metadata.Name)
		}
		r.objects[o.Kind][o.Metadata.Name] = doc
	}
	return r, nil
}

// get decodes the object of kind and name into v; it fails the test if
// there is none.
func (r *rendered) get(t *testing.T, kind, name string, v any) {
	t.Helper()
	doc, ok := r.objects[kind][name]
	if !ok {
		t.Fatalf("no %s %s rendered; have %v", kind, name, slices.Sorted(func(yield func(string) bool) {
			for k := range r.objects[kind] {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if err := doc.Decode(v); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
}

// has reports whether an object of kind and name was rendered.
func (r *rendered) has(kind, name string) bool {
	_, ok := r.objects[kind][name]
	return ok
}

// Names of the release's objects, as the chart names them.
const (
	fullname = helmRelease + "-keep"
	headless = fullname + "-headless"
)

// podHost is the DNS name and port of node i: its --host.
func podHost(i int) string {
	return fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local:7373", fullname, i, headless, helmNamespace)
}

// chartCase is one set of values and what it must render.
type chartCase struct {
	name         string
	set          []string
	replicas     int
	antiAffinity string // soft, hard or ""
	certManager  bool
	monitor      bool
	caKey        string
	pkcs11       bool // the HSM is a PKCS#11 token, whose PIN comes from a Secret
}

var chartCases = []chartCase{
	{name: "defaults", replicas: 3, antiAffinity: "soft"},
	{
		name:     "cert-manager, ServiceMonitor, required anti-affinity, 5 nodes",
		set:      []string{"replicaCount=5", "tls.certManager.enabled=true", "tls.certManager.issuerRef.name=keep-ca", "tls.caKey=ca.crt", "serviceMonitor.enabled=true", "antiAffinity=hard"},
		replicas: 5, antiAffinity: "hard", certManager: true, monitor: true, caKey: "ca.crt",
	},
	{name: "one node", set: []string{"replicaCount=1", "antiAffinity="}, replicas: 1},
	{name: "7 nodes, 3 may go", set: []string{"replicaCount=7", "podDisruptionBudget.maxUnavailable=3"}, replicas: 7, antiAffinity: "soft"},
	{
		name: "PKCS#11 token instead of a soft key",
		set: []string{"hsm.soft=false",
			"extraEnv[0].name=KEEP_PKCS11_MODULE", "extraEnv[0].value=/usr/lib/softhsm/libsofthsm2.so",
			"extraEnv[1].name=KEEP_PKCS11_PIN", "extraEnv[1].valueFrom.secretKeyRef.name=keep-pin", "extraEnv[1].valueFrom.secretKeyRef.key=pin"},
		replicas: 3, antiAffinity: "soft", pkcs11: true,
	},
}

// TestHelmChart lints and renders the chart with each chartCase and checks
// the invariants of what it renders; values that would break a cluster
// must be refused.
func TestHelmChart(t *testing.T) {
	dir := chartDir(t)
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", "--strict", dir, "--namespace", helmNamespace}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			if out, err := helm(t, args...); err != nil {
				t.Fatalf("%v", err)
			} else if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint: %s", out)
			}
			r, err := render(t, tc.set...)
			if err != nil {
				t.Fatal(err)
			}
			checkChart(t, r, tc)
		})
	}

	refused := []struct {
		set  []string
		want string
	}{
		{[]string{"replicaCount=4"}, "replicaCount must be odd"},
		{[]string{"replicaCount=0"}, "replicaCount must be odd"},
		{[]string{"podDisruptionBudget.maxUnavailable=2"}, "would leave no majority"},
		{[]string{"replicaCount=5", "podDisruptionBudget.maxUnavailable=3"}, "would leave no majority"},
		{[]string{"tls.certManager.enabled=true"}, "issuerRef.name is required"},
		{[]string{"antiAffinity=always"}, "antiAffinity must be"},
	}
	for _, tc := range refused {
		if _, err := render(t, tc.set...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template --set %s: %v, want an error with %q", strings.Join(tc.set, ","), err, tc.want)
		}
	}
}

// checkChart checks the invariants of one rendering.
func checkChart(t *testing.T, r *rendered, tc chartCase) {
	var sts statefulSet
	r.get(t, "StatefulSet", fullname, &sts)
	spec := sts.Spec
	podLabels := spec.Template.Metadata.Labels
	if spec.Replicas != tc.replicas || spec.Replicas%2 != 1 {
		t.Errorf("StatefulSet replicas %d, want %d (odd)", spec.Replicas, tc.replicas)
	}
	if spec.PodManagementPolicy != "Parallel" {
		t.Errorf("podManagementPolicy %q: after a full stop node 0 waits for a majority that OrderedReady would never start", spec.PodManagementPolicy)
	}
	if !selects(spec.Selector.MatchLabels, podLabels) {
		t.Errorf("StatefulSet selector %v does not select its pods %v", spec.Selector.MatchLabels, podLabels)
	}

	// The headless Service names every node and publishes nodes that
	// are not ready yet, so that they reach each other while starting.
	if spec.ServiceName != headless {
		t.Errorf("serviceName %q, want %q", spec.ServiceName, headless)
	}
	var hs service
	r.get(t, "Service", headless, &hs)
	if hs.Spec.ClusterIP != "None" || !hs.Spec.PublishNotReadyAddresses || !selects(hs.Spec.Selector, podLabels) {
		t.Errorf("headless Service: clusterIP %q, publishNotReadyAddresses %v, selector %v", hs.Spec.ClusterIP, hs.Spec.PublishNotReadyAddresses, hs.Spec.Selector)
	}
	var cs service
	r.get(t, "Service", fullname, &cs)
	if !selects(cs.Spec.Selector, podLabels) || len(cs.Spec.Ports) != 1 || cs.Spec.Ports[0].Port != 7373 {
		t.Errorf("client Service: selector %v, ports %v", cs.Spec.Selector, cs.Spec.Ports)
	}

	if len(spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers in a node's pod, want 1", len(spec.Template.Spec.Containers))
	}
	c := spec.Template.Spec.Containers[0]
	args := serverArgs(t, c)
	for i := range tc.replicas {
		if got := expandEnv(t, args["--host"], c.Env, map[string]string{"metadata.name": fmt.Sprintf("%s-%d", fullname, i)}); got != podHost(i) {
			t.Errorf("node %d: --host %s, want %s", i, got, podHost(i))
		}
	}
	// Node 0 founds the cluster: the others wait, not ready, to be added.
	if args["--seed"] != podHost(0) {
		t.Errorf("--seed %q, want node 0's host %s", args["--seed"], podHost(0))
	}
	if args["--address"] != "0.0.0.0:7373" {
		t.Errorf("--address %q", args["--address"])
	}

	// Secrets come from Secrets only: the HSM key as a file of a mounted
	// Secret (never a variable), the TLS key from a mounted Secret; no
	// secret is rendered.
	if v := envNamed(c.Env, "MINIO_KMS_HSM_KEY"); v != nil {
		t.Errorf("the HSM key is a variable: %+v", v)
	}
	hsmFile := envNamed(c.Env, "MINIO_KMS_HSM_KEY_FILE")
	switch {
	case tc.pkcs11:
		if hsmFile != nil || envNamed(c.Env, "KEEP_PKCS11_PIN") == nil {
			t.Errorf("PKCS#11: MINIO_KMS_HSM_KEY_FILE %+v, KEEP_PKCS11_PIN %+v", hsmFile, envNamed(c.Env, "KEEP_PKCS11_PIN"))
		}
	case hsmFile == nil || hsmFile.Value == nil:
		t.Errorf("no MINIO_KMS_HSM_KEY_FILE: %+v", hsmFile)
	default:
		if mount := secretMount(spec.Template.Spec.Volumes, c.VolumeMounts, fullname+"-hsm"); mount == "" || filepath.Dir(*hsmFile.Value) != mount {
			t.Errorf("MINIO_KMS_HSM_KEY_FILE %s is not in the Secret %s-hsm (mounted at %q)", *hsmFile.Value, fullname, mount)
		}
	}
	checkNoSecrets(t, r)
	tlsSecret := fullname + "-tls"
	tlsMount := secretMount(spec.Template.Spec.Volumes, c.VolumeMounts, tlsSecret)
	if tlsMount == "" {
		t.Errorf("the Secret %s is not mounted whole (renewals must reach the node)", tlsSecret)
	}
	conf := loadRenderedConfig(t, r, args["--config"], c)
	if len(conf.TLS.Certs) != 1 || filepath.Dir(conf.TLS.Certs[0].Cert) != tlsMount || filepath.Dir(conf.TLS.Certs[0].Key) != tlsMount {
		t.Errorf("tls.certs %+v are not in the Secret's mount %s", conf.TLS.Certs, tlsMount)
	}
	if tc.caKey != "" && conf.TLS.CA != tlsMount+"/"+tc.caKey {
		t.Errorf("tls.ca %q, want %s/%s", conf.TLS.CA, tlsMount, tc.caKey)
	}

	checkProbes(t, c)
	checkAntiAffinity(t, spec.Template.Spec, podLabels, tc.antiAffinity)

	// A majority stays through voluntary disruptions.
	if tc.replicas > 1 {
		var p pdb
		r.get(t, "PodDisruptionBudget", fullname, &p)
		if p.Spec.MaxUnavailable == nil || p.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget: maxUnavailable %v, minAvailable %v; want maxUnavailable", p.Spec.MaxUnavailable, p.Spec.MinAvailable)
		} else if n, u := tc.replicas, *p.Spec.MaxUnavailable; n-u <= n/2 {
			t.Errorf("PodDisruptionBudget maxUnavailable %d of %d nodes leaves no majority", u, n)
		}
		if !selects(p.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget selector %v does not select the nodes", p.Spec.Selector.MatchLabels)
		}
	} else if r.has("PodDisruptionBudget", fullname) {
		t.Errorf("a PodDisruptionBudget for one node would block every drain")
	}

	checkJoinJob(t, r, tc)

	if got := r.has("Certificate", fullname); got != tc.certManager {
		t.Errorf("Certificate rendered: %v, want %v", got, tc.certManager)
	} else if got {
		var cert certificate
		r.get(t, "Certificate", fullname, &cert)
		if cert.Spec.SecretName != tlsSecret {
			t.Errorf("Certificate writes %s, the nodes mount %s", cert.Spec.SecretName, tlsSecret)
		}
		want := []string{fmt.Sprintf("%s.%s.svc.cluster.local", fullname, helmNamespace)}
		for i := range tc.replicas {
			want = append(want, strings.TrimSuffix(podHost(i), ":7373"))
		}
		for _, name := range want {
			if !slices.Contains(cert.Spec.DNSNames, name) {
				t.Errorf("Certificate lacks %s: %v", name, cert.Spec.DNSNames)
			}
		}
	}

	if got := r.has("ServiceMonitor", fullname); got != tc.monitor {
		t.Errorf("ServiceMonitor rendered: %v, want %v", got, tc.monitor)
	} else if got {
		var sm serviceMonitor
		r.get(t, "ServiceMonitor", fullname, &sm)
		var hsObj object
		r.get(t, "Service", headless, &hsObj)
		if !selects(sm.Spec.Selector.MatchLabels, hsObj.Metadata.Labels) {
			t.Errorf("ServiceMonitor selector %v does not select the headless Service %v", sm.Spec.Selector.MatchLabels, hsObj.Metadata.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/v1/health/metrics" || sm.Spec.Endpoints[0].Scheme != "https" || sm.Spec.Endpoints[0].Port != "https" {
			t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
	}
}

// selects reports whether a label selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// serverArgs checks that the container runs keep server DIR and returns
// its --flag=value arguments.
func serverArgs(t *testing.T, c container) map[string]string {
	t.Helper()
	if len(c.Command) != 0 || len(c.Args) < 2 || c.Args[0] != "server" || strings.HasPrefix(c.Args[1], "-") {
		t.Fatalf("node container runs %v %v, want the image's keep with server DIR", c.Command, c.Args)
	}
	flags := map[string]string{}
	for _, a := range c.Args[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(k, "--") {
			t.Fatalf("server argument %q: want --flag=value", a)
		}
		flags[k] = v
	}
	return flags
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv expands $(VAR) in s as Kubernetes does in args, from env,
// whose fieldRef values come from fields.
func expandEnv(t *testing.T, s string, env []envVar, fields map[string]string) string {
	t.Helper()
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		v := envNamed(env, ref[2:len(ref)-1])
		switch {
		case v == nil:
			t.Errorf("%s refers to %s, which is not in the container's environment", s, ref)
		case v.Value != nil:
			return *v.Value
		case v.ValueFrom != nil && v.ValueFrom.FieldRef != nil:
			if f, ok := fields[v.ValueFrom.FieldRef.FieldPath]; ok {
				return f
			}
		}
		t.Errorf("%s: cannot expand %s", s, ref)
		return ref
	})
}

func envNamed(env []envVar, name string) *envVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

// secretLike matches what a secret of Keep looks like: HSM keys, API keys,
// PEM private keys, PKCS#11 PINs in clear.
var secretLike = regexp.MustCompile(`hsm:aes256:|\bk[12]:[A-Za-z0-9+/]|PRIVATE KEY-----|kind: Secret\b`)

// checkNoSecrets checks that nothing secret is rendered: no Secret object,
// nothing that looks like a key, and every variable that names a key, PIN
// or password comes from a Secret.
func checkNoSecrets(t *testing.T, r *rendered) {
	t.Helper()
	if m := secretLike.FindString(r.text); m != "" {
		t.Errorf("the rendered manifests hold %q", m)
	}
	for kind, objs := range r.objects {
		for name, doc := range objs {
			var pod struct {
				Spec struct {
					Template podTemplate `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := doc.Decode(&pod); err != nil {
				continue
			}
			vols := pod.Spec.Template.Spec.Volumes
			for _, c := range pod.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					if !regexp.MustCompile(`KEY|PIN|PASSWORD|TOKEN`).MatchString(e.Name) {
						continue
					}
					if strings.HasSuffix(e.Name, "_FILE") {
						// A path to the secret: it must be a file of a
						// mounted Secret.
						if e.Value == nil || !inSecretMount(vols, c.VolumeMounts, *e.Value) {
							t.Errorf("%s %s, container %s: %s is not a file of a mounted Secret", kind, name, c.Name, e.Name)
						}
						continue
					}
					if e.Value != nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("%s %s, container %s: %s is not from a Secret", kind, name, c.Name, e.Name)
					}
				}
			}
		}
	}
}

// loadRenderedConfig loads the rendered keep.yaml, mounted at path in c,
// with the server's own parser, which refuses unknown fields.
func loadRenderedConfig(t *testing.T, r *rendered, path string, c container) *server.Config {
	t.Helper()
	var cm configMap
	r.get(t, "ConfigMap", fullname, &cm)
	var sub string
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			sub = m.SubPath
		}
	}
	text, ok := cm.Data[sub]
	if !ok {
		t.Fatalf("--config=%s is not mounted from the ConfigMap (subPath %q; keys %v)", path, sub, cm.Data)
	}
	file := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := server.LoadConfig(file)
	if err != nil {
		t.Fatalf("the rendered keep.yaml: %v\n%s", err, text)
	}
	return conf
}

// checkProbes checks the node's probes: HTTPS on the public health routes
// (kubelet sends no client certificate), and a startup probe that gives a
// node that catches up with its cluster minutes before liveness counts.
func checkProbes(t *testing.T, c container) {
	t.Helper()
	probes := []struct {
		name string
		p    *probe
		path string
	}{
		{"startupProbe", c.StartupProbe, "/v1/health/live"},
		{"livenessProbe", c.LivenessProbe, "/v1/health/live"},
		{"readinessProbe", c.ReadinessProbe, "/v1/health/ready"},
	}
	for _, p := range probes {
		switch {
		case p.p == nil || p.p.HTTPGet == nil:
			t.Errorf("%s: none, or not httpGet", p.name)
		case p.p.HTTPGet.Scheme != "HTTPS" || p.p.HTTPGet.Path != p.path || !slices.ContainsFunc(c.Ports, func(port struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		}) bool {
			return port.Name == p.p.HTTPGet.Port && port.ContainerPort == 7373
		}):
			t.Errorf("%s: %+v, want HTTPS %s on port 7373", p.name, *p.p.HTTPGet, p.path)
		}
	}
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 300 {
		t.Errorf("startupProbe allows %d s to catch up; a node restoring a large snapshot needs minutes", p.PeriodSeconds*p.FailureThreshold)
	}
}

// checkAntiAffinity checks that the nodes are spread as want says.
func checkAntiAffinity(t *testing.T, spec podSpec, podLabels map[string]string, want string) {
	t.Helper()
	aa := spec.Affinity.PodAntiAffinity
	var terms []affinityTerm
	switch want {
	case "hard":
		terms = aa.Required
		if len(aa.Preferred) != 0 {
			t.Errorf("required anti-affinity also has preferred terms")
		}
	case "soft":
		for _, p := range aa.Preferred {
			terms = append(terms, p.Term)
		}
		if len(aa.Required) != 0 {
			t.Errorf("preferred anti-affinity also has required terms")
		}
	default:
		if len(aa.Required)+len(aa.Preferred) != 0 {
			t.Errorf("anti-affinity %+v, want none", aa)
		}
		return
	}
	if len(terms) != 1 || terms[0].TopologyKey != "kubernetes.io/hostname" || !selects(terms[0].LabelSelector.MatchLabels, podLabels) {
		t.Errorf("%s anti-affinity %+v does not keep the nodes apart", want, terms)
	}
}

// checkJoinJob checks the join Job: a hook after install and upgrade,
// one container per node N > 0, each adding node N by its --host through
// node 0 with the API key from a Secret, idempotently.
func checkJoinJob(t *testing.T, r *rendered, tc chartCase) {
	t.Helper()
	name := fullname + "-join"
	if tc.replicas == 1 {
		if r.has("Job", name) {
			t.Errorf("a join Job for one node")
		}
		return
	}
	var o object
	r.get(t, "Job", name, &o)
	if hooks := strings.Split(o.Metadata.Annotations["helm.sh/hook"], ","); !slices.Contains(hooks, "post-install") || !slices.Contains(hooks, "post-upgrade") {
		t.Errorf("join Job hooks %v, want post-install and post-upgrade", hooks)
	}
	var j job
	r.get(t, "Job", name, &j)
	cs := j.Spec.Template.Spec.Containers
	if len(cs) != tc.replicas-1 {
		t.Fatalf("join Job has %d containers, want one for each of nodes 1…%d", len(cs), tc.replicas-1)
	}
	if rp := j.Spec.Template.Spec.RestartPolicy; rp != "OnFailure" && rp != "Never" {
		t.Errorf("join Job restartPolicy %q", rp)
	}
	for i, c := range cs {
		want := []string{"add", podHost(i + 1), "--exists-ok"}
		if len(c.Args) < 4 || !slices.Equal(c.Args[:3], want) || !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--wait=") }) {
			t.Errorf("join container %s: args %v, want %v --wait=…", c.Name, c.Args, want)
		}
		if insecure := slices.Contains(c.Args, "--insecure"); insecure != (tc.caKey == "") {
			t.Errorf("join container %s: --insecure %v with tls.caKey %q", c.Name, insecure, tc.caKey)
		}
		if s := envNamed(c.Env, "MINIO_KMS_SERVER"); s == nil || s.Value == nil || *s.Value != "https://"+podHost(0) {
			t.Errorf("join container %s: MINIO_KMS_SERVER %+v, want node 0 alone, https://%s", c.Name, s, podHost(0))
		}
		if k := envNamed(c.Env, "MINIO_KMS_API_KEY"); k == nil || k.ValueFrom == nil || k.ValueFrom.SecretKeyRef == nil || k.ValueFrom.SecretKeyRef.Name != fullname+"-admin" {
			t.Errorf("join container %s: MINIO_KMS_API_KEY %+v is not from the Secret %s-admin", c.Name, k, fullname)
		}
	}
}

// TestHelmJoin runs the chart's join Job, as rendered, against real nodes
// started with the rendered keep.yaml (its TLS paths pointed at a test CA's
// certificates, its host names mapped to 127.0.0.x): a first install where
// a node starts after its join began, a re-run, a rolling restart, a
// scale-up from 3 to 5 nodes, a node that lost its volume, and a wrong API
// key. Each node's probes are
// sent as kubelet sends them.
func TestHelmJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five keep nodes")
	}
	set := []string{"tls.caKey=ca.crt"}
	r3, err := render(t, set...)
	if err != nil {
		t.Fatal(err)
	}
	r5, err := render(t, append(set, "replicaCount=5")...)
	if err != nil {
		t.Fatal(err)
	}
	var sts statefulSet
	r3.get(t, "StatefulSet", fullname, &sts)
	node := sts.Spec.Template.Spec.Containers[0]
	var cm configMap
	r3.get(t, "ConfigMap", fullname, &cm)

	// What Kubernetes would mount: the TLS Secret of a CA that issued a
	// certificate for every node, and keep.yaml.
	ca := testnode.NewCA(t, "keep test CA")
	tlsDir := "/etc/keep/tls"
	hsmKey := testnode.NewHSMKey(t)
	nodes := make([]*testnode.Node, 5)
	hostOf := map[string]string{} // rendered --host → the node's address
	for i := range nodes {
		addr := testnode.AllocAddr(t)
		dir := t.TempDir()
		leaf := ca.Issue(t, testnode.IPOf(addr), 0)
		for f, data := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.CertPEM} {
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		conf := filepath.Join(dir, "keep.yaml")
		if err := os.WriteFile(conf, []byte(strings.ReplaceAll(cm.Data["keep.yaml"], tlsDir+"/", dir+"/")), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = testnode.New(t, testnode.Options{Name: fmt.Sprintf("%s-%d", fullname, i), Addr: addr, HSMKey: hsmKey, Config: conf})
		hostOf[podHost(i)] = addr
	}
	// The nodes' --seed, as rendered: node 0.
	seed, ok := hostOf[serverArgs(t, node)["--seed"]]
	if !ok {
		t.Fatalf("--seed %q is not a node's host", serverArgs(t, node)["--seed"])
	}
	for _, n := range nodes {
		n.ExtraArgs = append(n.ExtraArgs, "--seed="+seed)
	}
	if !strings.Contains(cm.Data["keep.yaml"], tlsDir+"/") {
		t.Fatalf("keep.yaml does not name %s: %s", tlsDir, cm.Data["keep.yaml"])
	}
	root, err := testnode.HSMRootAPIKey(hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{fullname + "-admin/apiKey": root, fullname + "-hsm/hsmKey": hsmKey}
	caFile := filepath.Join(filepath.Dir(nodes[0].Config), "ca.crt")
	job := func(r *rendered, apiKey string) []joinRun {
		var j job
		r.get(t, "Job", fullname+"-join", &j)
		var runs []joinRun
		for _, c := range j.Spec.Template.Spec.Containers {
			runs = append(runs, joinCommand(t, c, hostOf, secrets, apiKey, tlsDir, caFile))
		}
		return runs
	}

	// Install: nodes 0 and 1 start, the Job starts, node 2 comes later
	// (its image is still being pulled).
	for _, n := range nodes[:2] {
		n.MustStart()
	}
	done := runJob(t, job(r3, ""))
	time.Sleep(3 * time.Second)
	nodes[2].MustStart()
	for _, res := range <-done {
		t.Logf("install: %s", res)
		if res.code != 0 || !strings.Contains(res.stdout, "Added ") {
			t.Fatalf("install: %s", res)
		}
	}
	members := clusterHosts(t, nodes[0], root)
	wantMembers(t, members, nodes[:3])
	if res := testnode.CLI(t, []string{nodes[1].Endpoint()}, root, "add-key", "helm-join-key", "-k"); res.Code != 0 {
		t.Fatalf("%s", res)
	}
	for _, n := range nodes[:3] {
		probeLikeKubelet(t, n, node)
	}

	// Upgrade with the same values: the Job runs again and changes nothing.
	rerun := func(what string, r *rendered, want []*testnode.Node) {
		t.Helper()
		for _, res := range <-runJob(t, job(r, "")) {
			t.Logf("%s: %s", what, res)
			if res.code != 0 || !strings.Contains(res.stdout, "a node of the cluster already") && !strings.Contains(res.stdout, "Added ") {
				t.Fatalf("%s: %s", what, res)
			}
		}
		after := clusterHosts(t, nodes[0], root)
		wantMembers(t, after, want)
		for h, id := range members {
			if after[h] != id {
				t.Errorf("%s: node %s had ID %s, now %q", what, h, id, after[h])
			}
		}
		members = after
	}
	rerun("re-run", r3, nodes[:3])

	// A rolling restart keeps the nodes' volumes: they are members when
	// they come back, and the Job leaves them alone.
	for _, n := range []*testnode.Node{nodes[2], nodes[1], nodes[0]} {
		n.Restart()
		probeLikeKubelet(t, n, node)
	}
	rerun("rolling restart", r3, nodes[:3])

	// Scale-up to 5: nodes 3 and 4 serve, but are not ready (no client
	// is sent to them) until the Job has added them, and nothing else.
	nodes[3].MustStart()
	nodes[4].MustStart()
	for _, n := range nodes[3:] {
		if status := readiness(t, n, node); status != http.StatusServiceUnavailable {
			t.Errorf("%s before the join: readiness %d, want %d", n.Name, status, http.StatusServiceUnavailable)
		}
	}
	rerun("scale-up", r5, nodes)
	for _, n := range nodes[3:] {
		probeLikeKubelet(t, n, node)
	}
	if res := testnode.CLI(t, []string{nodes[4].Endpoint()}, root, "stat-key", "helm-join-key", "-k"); res.Code != 0 {
		t.Errorf("the key created before the scale-up, on node 4: %s", res)
	}

	// Node 2 loses its volume: it comes back empty under a member's name,
	// and the leader's log reaches it. As docs/deploy-helm.md says, it is
	// removed through another node with --delete-cluster, which resets
	// it, and the Job adds it again (a plain rm leaves it holding the
	// log, and the Job fails: already a node of this cluster).
	nodes[2].Stop()
	if err := os.RemoveAll(nodes[2].Dir); err != nil {
		t.Fatal(err)
	}
	nodes[2].MustStart()
	if res := testnode.CLI(t, []string{nodes[1].Endpoint()}, root, "rm", nodes[2].Host, "--delete-cluster", "-k"); res.Code != 0 {
		t.Fatalf("keep rm of the node that lost its volume: %s", res)
	}
	delete(members, nodes[2].Host)
	rerun("lost volume", r5, nodes)
	if res := testnode.CLI(t, []string{nodes[2].Endpoint()}, root, "stat-key", "helm-join-key", "-k"); res.Code != 0 {
		t.Errorf("the key, on the node that lost its volume and was added again: %s", res)
	}

	// A wrong API key fails the Job at once, for all its --wait.
	start := time.Now()
	for _, res := range <-runJob(t, job(r5, testnode.NewAPIKey(t).String())) {
		t.Logf("wrong API key: %s", res)
		if res.code == 0 || !strings.Contains(res.stderr, "403") && !strings.Contains(strings.ToLower(res.stderr), "permission") {
			t.Errorf("wrong API key: %s", res)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the Job with a wrong API key took %v: a refusal must not be retried", d)
	}
}

// joinRun is one container of the join Job, ready to run here.
type joinRun struct {
	name string
	args []string
	env  []string
}

// joinResult is how a joinRun ended.
type joinResult struct {
	joinRun
	code           int
	stdout, stderr string
}

// secretMount is where mounts mount the whole of the volume of Secret
// name, or "" if they do not.
func secretMount(vols []volume, mounts []volumeMount, name string) string {
	for _, v := range vols {
		if v.Secret == nil || v.Secret.SecretName != name {
			continue
		}
		for _, m := range mounts {
			if m.Name == v.Name && m.SubPath == "" {
				return m.MountPath
			}
		}
	}
	return ""
}

// inSecretMount reports whether path is a file directly in the mount of a
// Secret volume.
func inSecretMount(vols []volume, mounts []volumeMount, path string) bool {
	for _, v := range vols {
		if v.Secret != nil && filepath.Dir(path) == secretMount(vols, mounts, v.Secret.SecretName) {
			return true
		}
	}
	return false
}

func (r joinResult) String() string {
	return fmt.Sprintf("%s: keep %s: exit %d\nstdout:\n%s\nstderr:\n%s", r.name, strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// joinCommand turns a join container into a command line: its args and
// env as rendered, with the nodes' DNS names replaced by their addresses
// (hostOf), secretKeyRefs read from secrets ("name/key"; apiKey, if set,
// replaces the API key), and the TLS mount at tlsDir moved to caFile's
// directory.
func joinCommand(t *testing.T, c container, hostOf, secrets map[string]string, apiKey, tlsDir, caFile string) joinRun {
	t.Helper()
	mapHosts := func(s string) string {
		for h, addr := range hostOf {
			s = strings.ReplaceAll(s, h, addr)
		}
		return strings.ReplaceAll(s, tlsDir+"/", filepath.Dir(caFile)+"/")
	}
	run := joinRun{name: c.Name, env: testnode.BaseEnv(t.TempDir())}
	for _, a := range c.Args {
		run.args = append(run.args, mapHosts(a))
	}
	for _, e := range c.Env {
		switch {
		case e.Value != nil:
			run.env = append(run.env, e.Name+"="+mapHosts(*e.Value))
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secrets[ref.Name+"/"+ref.Key]
			if !ok {
				t.Fatalf("join container %s: no Secret %s/%s", c.Name, ref.Name, ref.Key)
			}
			if e.Name == "MINIO_KMS_API_KEY" && apiKey != "" {
				v = apiKey
			}
			run.env = append(run.env, e.Name+"="+v)
		default:
			t.Fatalf("join container %s: env %s has no value this test can give", c.Name, e.Name)
		}
	}
	if strings.Contains(strings.Join(run.args, " "), ".svc.") {
		t.Fatalf("join container %s: a host name is left unmapped: %v", c.Name, run.args)
	}
	return run
}

// runJob runs the containers of a join Job at once, as a pod runs them,
// and sends their results when all have ended (within two minutes).
func runJob(t *testing.T, runs []joinRun) <-chan []joinResult {
	t.Helper()
	bin := testnode.Binary(t)
	out := make(chan []joinResult, 1)
	go func() {
		results := make([]joinResult, len(runs))
		var wg sync.WaitGroup
		for i, run := range runs {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, run.args...)
				cmd.Env = run.env
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				var o, e bytes.Buffer
				cmd.Stdout, cmd.Stderr = &o, &e
				err := cmd.Run()
				res := joinResult{joinRun: run, stdout: o.String(), stderr: e.String()}
				var ee *exec.ExitError
				switch {
				case errors.As(err, &ee):
					res.code = ee.ExitCode()
				case err != nil:
					res.code, res.stderr = -1, err.Error()
				}
				results[i] = res
			})
		}
		wg.Wait()
		out <- results
	}()
	return out
}

// clusterHosts returns the cluster's nodes as keep ls lists them: host →
// node ID, every node up.
func clusterHosts(t *testing.T, n *testnode.Node, apiKey string) map[string]string {
	t.Helper()
	res := testnode.CLI(t, []string{n.Endpoint()}, apiKey, "ls", "-k")
	if res.Code != 0 {
		t.Fatalf("%s", res)
	}
	hosts := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("keep ls line %q", line)
		}
		if f[2] == "down" {
			t.Errorf("keep ls: node %s is down", f[1])
		}
		hosts[f[1]] = f[0]
	}
	return hosts
}

// wantMembers checks that the cluster's nodes are exactly want.
func wantMembers(t *testing.T, got map[string]string, want []*testnode.Node) {
	t.Helper()
	var hosts []string
	for _, n := range want {
		hosts = append(hosts, n.Host)
	}
	if !slices.Equal(slices.Sorted(func(yield func(string) bool) {
		for h := range got {
			if !yield(h) {
				return
			}
		}
	}), slices.Sorted(slices.Values(hosts))) {
		t.Fatalf("cluster nodes %v, want %v", got, hosts)
	}
}

// readiness sends c's readiness probe to n once, as kubelet does, and
// returns the status of the answer.
func readiness(t *testing.T, n *testnode.Node, c container) int {
	t.Helper()
	client := kubeletClient()
	defer client.CloseIdleConnections()
	resp, err := client.Get(probeURL(n, c.ReadinessProbe))
	if err != nil {
		t.Fatalf("readiness probe of %s: %v", n.Name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// kubeletClient sends probes as kubelet does: HTTPS without a client
// certificate, not verifying the node's, a connection per probe.
func kubeletClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // #nosec G402 -- kubelet does not verify probe targets
			DisableKeepAlives: true,
		},
	}
}

// probeURL is the URL probe p asks of node n.
func probeURL(n *testnode.Node, p *probe) string {
	return strings.ToLower(p.HTTPGet.Scheme) + "://" + n.Addr + p.HTTPGet.Path
}

// probeLikeKubelet sends the container's probes to n as kubelet does:
// HTTPS without verifying the certificate and without a client
// certificate, a new connection each time. Each must answer 200 (within
// 10 s: the node is up).
func probeLikeKubelet(t *testing.T, n *testnode.Node, c container) {
	t.Helper()
	client := kubeletClient()
	defer client.CloseIdleConnections()
	for _, p := range []*probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		url := probeURL(n, p)
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = errors.New(resp.Status)
			}
			if time.Now().After(deadline) {
				t.Errorf("probe %s of %s: %v", url, n.Name, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
