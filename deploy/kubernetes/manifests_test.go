// Package kubernetes_test checks the manifests of deploy/kubernetes
// offline, for what a cluster would only say late: every document decodes
// strictly into the official k8s.io/api types (an unknown or misspelt
// field fails), probe and Service ports exist on the containers, volume
// mounts name volumes, files named by flags are keys of the ConfigMaps and
// Secrets mounted there, flags exist in kpush, images are the one
// scripts/build makes, and the pods run as the non-root user on a
// read-only root file system.
package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kpush/kpush/internal/testproc"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoded strictly, so a field outside it fails the test rather than
// being ignored here.
type kustomization struct {
	APIVersion         string      `json:"apiVersion"`
	Kind               string      `json:"kind"`
	Namespace          string      `json:"namespace"`
	Resources          []string    `json:"resources"`
	ConfigMapGenerator []generator `json:"configMapGenerator"`
	SecretGenerator    []generator `json:"secretGenerator"`
}

type generator struct {
	Name     string   `json:"name"`
	Files    []string `json:"files"`
	Literals []string `json:"literals"`
}

// keys returns the generated object's keys: "key=path" files give key, a
// bare path its base name; literals give their name.
func (g generator) keys() []string {
	var ks []string
	for _, f := range g.Files {
		k, _, ok := strings.Cut(f, "=")
		if !ok {
			k = path.Base(f)
		}
		ks = append(ks, k)
	}
	for _, l := range g.Literals {
		k, _, _ := strings.Cut(l, "=")
		ks = append(ks, k)
	}
	return ks
}

// objects are the decoded documents, by kind.
type objects struct {
	namespaces  []corev1.Namespace
	services    []corev1.Service
	statefuls   []appsv1.StatefulSet
	deployments []appsv1.Deployment
	pdbs        []policyv1.PodDisruptionBudget
	policies    []networkingv1.NetworkPolicy
	hpas        []autoscalingv2.HorizontalPodAutoscaler
}

// decode decodes one YAML document strictly into the type its apiVersion
// and kind name.
func (o *objects) decode(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(into any) error { return yaml.UnmarshalStrict(doc, into) }
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		var v corev1.Namespace
		err := strict(&v)
		o.namespaces = append(o.namespaces, v)
		return err
	case "v1 Service":
		var v corev1.Service
		err := strict(&v)
		o.services = append(o.services, v)
		return err
	case "apps/v1 StatefulSet":
		var v appsv1.StatefulSet
		err := strict(&v)
		o.statefuls = append(o.statefuls, v)
		return err
	case "apps/v1 Deployment":
		var v appsv1.Deployment
		err := strict(&v)
		o.deployments = append(o.deployments, v)
		return err
	case "policy/v1 PodDisruptionBudget":
		var v policyv1.PodDisruptionBudget
		err := strict(&v)
		o.pdbs = append(o.pdbs, v)
		return err
	case "networking.k8s.io/v1 NetworkPolicy":
		var v networkingv1.NetworkPolicy
		err := strict(&v)
		o.policies = append(o.policies, v)
		return err
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var v autoscalingv2.HorizontalPodAutoscaler
		err := strict(&v)
		o.hpas = append(o.hpas, v)
		return err
	}
	return fmt.Errorf("apiVersion %q kind %q: not a kind this test knows (add it)", tm.APIVersion, tm.Kind)
}

// workload is a pod template with its owner's name.
type workload struct {
	name   string
	tmpl   corev1.PodTemplateSpec
	claims []string // volumeClaimTemplates of a StatefulSet
}

func (o *objects) workloads() []workload {
	var ws []workload
	for _, s := range o.statefuls {
		w := workload{name: "StatefulSet " + s.Name, tmpl: s.Spec.Template}
		for _, c := range s.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, c.Name)
		}
		ws = append(ws, w)
	}
	for _, d := range o.deployments {
		ws = append(ws, workload{name: "Deployment " + d.Name, tmpl: d.Spec.Template})
	}
	return ws
}

// load reads kustomization.yaml and every resource it lists.
func load(t *testing.T) (kustomization, *objects) {
	t.Helper()
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	o := &objects{}
	for _, res := range k.Resources {
		raw, err := os.ReadFile(res)
		if err != nil {
			t.Fatalf("resource %s: %v", res, err)
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			if err := o.decode(doc); err != nil {
				t.Errorf("%s, document %d: %v", res, i+1, err)
			}
		}
	}
	return k, o
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestEveryManifestIsListed: every YAML file here is a resource of the
// kustomization (or the kustomization itself), so none is forgotten by
// `kubectl apply -k`, and every listed one exists.
func TestEveryManifestIsListed(t *testing.T) {
	k, _ := load(t)
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(k.Resources, f) {
			t.Errorf("%s is not listed in kustomization.yaml resources", f)
		}
	}
}

// TestStrictDecodeCatchesMistakes: the decoding really is strict (a
// misspelt field fails), so the other tests' silence means something.
func TestStrictDecodeCatchesMistakes(t *testing.T) {
	o := &objects{}
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replica: 2\n"
	if err := o.decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field decoded: %v", err)
	}
	if err := o.decode([]byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n")); err == nil {
		t.Fatal("an unknown kind decoded")
	}
}

func portsOf(tmpl corev1.PodTemplateSpec) []corev1.ContainerPort {
	var ps []corev1.ContainerPort
	for _, c := range tmpl.Spec.Containers {
		ps = append(ps, c.Ports...)
	}
	return ps
}

func hasPort(ports []corev1.ContainerPort, p intstr.IntOrString) bool {
	return slices.ContainsFunc(ports, func(cp corev1.ContainerPort) bool {
		if p.Type == intstr.String {
			return cp.Name == p.StrVal
		}
		return cp.ContainerPort == p.IntVal
	})
}

// TestPortsExist: probes, Services, and NetworkPolicies name ports the
// containers have; every Service, PodDisruptionBudget and NetworkPolicy
// selects some workload.
func TestPortsExist(t *testing.T) {
	_, o := load(t)
	ws := o.workloads()
	selected := func(sel map[string]string) []workload {
		var out []workload
		for _, w := range ws {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.tmpl.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	for _, w := range ws {
		for _, c := range w.tmpl.Spec.Containers {
			for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil {
					t.Errorf("%s container %s: no %s probe", w.name, c.Name, what)
					continue
				}
				if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
					t.Errorf("%s container %s: %s probe is not GET /healthz", w.name, c.Name, what)
					continue
				}
				if !hasPort(c.Ports, p.HTTPGet.Port) {
					t.Errorf("%s container %s: %s probe port %s is not a container port", w.name, c.Name, what, p.HTTPGet.Port.String())
				}
			}
		}
	}
	for _, s := range o.services {
		sel := selected(s.Spec.Selector)
		if len(sel) == 0 {
			t.Errorf("Service %s selects no workload", s.Name)
		}
		for _, w := range sel {
			for _, p := range s.Spec.Ports {
				if !hasPort(portsOf(w.tmpl), p.TargetPort) {
					t.Errorf("Service %s port %s: target %s is not a port of %s", s.Name, p.Name, p.TargetPort.String(), w.name)
				}
			}
		}
	}
	for _, s := range o.statefuls {
		if !slices.ContainsFunc(o.services, func(svc corev1.Service) bool {
			return svc.Name == s.Spec.ServiceName && svc.Spec.ClusterIP == corev1.ClusterIPNone
		}) {
			t.Errorf("StatefulSet %s: serviceName %q is not a headless Service here", s.Name, s.Spec.ServiceName)
		}
	}
	for _, p := range o.pdbs {
		if len(selected(p.Spec.Selector.MatchLabels)) == 0 {
			t.Errorf("PodDisruptionBudget %s selects no workload", p.Name)
		}
	}
	for _, np := range o.policies {
		sel := selected(np.Spec.PodSelector.MatchLabels)
		if len(sel) == 0 {
			t.Errorf("NetworkPolicy %s selects no workload", np.Name)
		}
		for _, w := range sel {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port == nil || !hasPort(portsOf(w.tmpl), *p.Port) {
						t.Errorf("NetworkPolicy %s: port %v is not a port of %s", np.Name, p.Port, w.name)
					}
				}
			}
		}
	}
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || !slices.ContainsFunc(o.deployments, func(d appsv1.Deployment) bool { return d.Name == ref.Name }) {
			t.Errorf("HorizontalPodAutoscaler %s scales %s %s, which is not here", h.Name, ref.Kind, ref.Name)
		}
	}
}

// TestNetworkPolicies: the protocol port is open to producers and workers
// only, the admin port to the monitoring namespace only.
func TestNetworkPolicies(t *testing.T) {
	_, o := load(t)
	for _, np := range o.policies {
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy %s: a rule open to everyone", np.Name)
			}
			for _, p := range rule.Ports {
				for _, peer := range rule.From {
					switch p.Port.String() {
					case "kestrel":
						role := ""
						if peer.PodSelector != nil {
							role = peer.PodSelector.MatchLabels["kpush.io/role"]
						}
						if peer.NamespaceSelector != nil || (role != "producer" && role != "worker") {
							t.Errorf("NetworkPolicy %s: the protocol port is open to %+v", np.Name, peer)
						}
					case "admin":
						if peer.NamespaceSelector == nil || peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" || peer.PodSelector != nil {
							t.Errorf("NetworkPolicy %s: the admin port is open to %+v", np.Name, peer)
						}
					default:
						t.Errorf("NetworkPolicy %s: unexpected port %s", np.Name, p.Port.String())
					}
				}
			}
		}
	}
	for _, w := range o.workloads() {
		if !slices.ContainsFunc(o.policies, func(np networkingv1.NetworkPolicy) bool {
			return labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(w.tmpl.Labels))
		}) {
			t.Errorf("%s: no NetworkPolicy covers it", w.name)
		}
	}
}

// TestVolumesAndFiles: mounts name volumes; a file a flag names (--config,
// --auth-key, ...) lies in a mount of a ConfigMap or Secret that has that
// key; Secrets are mounted read-only; $(VAR) in args is defined.
func TestVolumesAndFiles(t *testing.T) {
	k, o := load(t)
	generated := map[string][]string{} // "configMap/name" or "secret/name" -> keys
	for _, g := range k.ConfigMapGenerator {
		generated["configMap/"+g.Name] = g.keys()
	}
	for _, g := range k.SecretGenerator {
		generated["secret/"+g.Name] = g.keys()
		for _, f := range g.Files {
			_, p, ok := strings.Cut(f, "=")
			if !ok {
				p = f
			}
			if !strings.HasPrefix(p, "secrets/") {
				t.Errorf("secret file %s is outside secrets/, which is not committed", p)
			}
		}
	}
	fileFlags := []string{"--config", "--auth-key", "--cert", "--cert-password-file", "--fcm-credentials", "--apns-ca", "--fcm-ca"}
	for _, w := range o.workloads() {
		vols := map[string]corev1.Volume{}
		for _, v := range w.tmpl.Spec.Volumes {
			vols[v.Name] = v
		}
		for _, c := range w.tmpl.Spec.Containers {
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil {
					t.Errorf("%s: envFrom other than a ConfigMap", w.name)
					continue
				}
				for _, key := range generated["configMap/"+ef.ConfigMapRef.Name] {
					env[key] = true
				}
				if generated["configMap/"+ef.ConfigMapRef.Name] == nil {
					t.Errorf("%s: envFrom ConfigMap %s is not generated here", w.name, ef.ConfigMapRef.Name)
				}
			}
			for _, arg := range c.Args {
				for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(arg, -1) {
					if !env[m[1]] {
						t.Errorf("%s: %s uses $(%s), which is not in the container's environment", w.name, arg, m[1])
					}
				}
			}
			for _, m := range c.VolumeMounts {
				v, ok := vols[m.Name]
				if !ok && !slices.Contains(w.claims, m.Name) {
					t.Errorf("%s container %s: mount %s names no volume", w.name, c.Name, m.Name)
				}
				if v.Secret != nil && !m.ReadOnly {
					t.Errorf("%s container %s: Secret volume %s is not mounted read-only", w.name, c.Name, m.Name)
				}
			}
			for _, arg := range c.Args {
				name, file, ok := strings.Cut(arg, "=")
				if !ok || !slices.Contains(fileFlags, name) {
					continue
				}
				found := false
				for _, m := range c.VolumeMounts {
					rel, err := filepath.Rel(m.MountPath, file)
					if err != nil || strings.HasPrefix(rel, "..") {
						continue
					}
					v := vols[m.Name]
					var keys []string
					switch {
					case v.Secret != nil:
						keys = generated["secret/"+v.Secret.SecretName]
					case v.ConfigMap != nil:
						keys = generated["configMap/"+v.ConfigMap.Name]
					default:
						t.Errorf("%s: %s=%s is on volume %s, neither a ConfigMap nor a Secret", w.name, name, file, m.Name)
					}
					if !slices.Contains(keys, rel) {
						t.Errorf("%s: %s=%s: volume %s has no key %q (has %v)", w.name, name, file, m.Name, rel, keys)
					}
					found = true
				}
				if !found {
					t.Errorf("%s: %s=%s is on no mounted volume", w.name, name, file)
				}
			}
			if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--cert-password=") }) {
				t.Errorf("%s: a password as a flag value (use --cert-password-file)", w.name)
			}
		}
	}
}

// TestImagesAndSecurity: every container runs the image scripts/build
// makes, as the image's non-root user, on a read-only root file system.
func TestImagesAndSecurity(t *testing.T) {
	script, err := os.ReadFile("../../scripts/build")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^image=\$\{IMAGE:-([^}]+)\}`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/build: no image=${IMAGE:-...} line")
	}
	image := string(m[1])
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).Match(dockerfile) {
		t.Fatal("Dockerfile: the image's user is no longer 65532")
	}
	_, o := load(t)
	for _, w := range o.workloads() {
		ps := w.tmpl.Spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 65532 {
			t.Errorf("%s: pod does not run as non-root user 65532", w.name)
		}
		if w.tmpl.Spec.TerminationGracePeriodSeconds == nil || *w.tmpl.Spec.TerminationGracePeriodSeconds <= 30 {
			t.Errorf("%s: terminationGracePeriodSeconds must exceed a clean shutdown (30 s)", w.name)
		}
		for _, c := range w.tmpl.Spec.Containers {
			if c.Image != image {
				t.Errorf("%s container %s: image %q, want %q (the one scripts/build makes)", w.name, c.Name, c.Image, image)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s container %s: want a read-only root file system and no privilege escalation", w.name, c.Name)
			}
			if w.tmpl.Annotations["prometheus.io/scrape"] != "true" || !hasPort(c.Ports, intstr.Parse(w.tmpl.Annotations["prometheus.io/port"])) {
				t.Errorf("%s: no Prometheus scrape annotations for a port of the container", w.name)
			}
			if slices.Contains(c.Args, "--pprof") {
				t.Errorf("%s: --pprof in a shipped manifest", w.name)
			}
		}
	}
	for _, s := range o.statefuls {
		if !slices.Contains(s.Spec.Template.Spec.Containers[0].Args, "--sync=always") {
			t.Errorf("StatefulSet %s: queued without --sync=always", s.Name)
		}
	}
}

// TestFlagsExist: every flag in a container's args is a flag of that kpush
// command (kpush CMD --help), and the worker finds queued through the
// headless Service's DNS.
func TestFlagsExist(t *testing.T) {
	_, o := load(t)
	help := map[string]string{}
	for _, w := range o.workloads() {
		for _, c := range w.tmpl.Spec.Containers {
			if len(c.Args) == 0 {
				t.Errorf("%s: no args", w.name)
				continue
			}
			cmd := c.Args[0]
			if _, ok := help[cmd]; !ok {
				out, _, err := testproc.Run(t, nil, cmd, "--help")
				if err != nil {
					t.Fatalf("kpush %s --help: %v", cmd, err)
				}
				help[cmd] = out
			}
			for _, a := range c.Args[1:] {
				name, _, _ := strings.Cut(a, "=")
				if !strings.HasPrefix(name, "--") || !regexp.MustCompile(`(?m)^\s+(-\w, )?`+regexp.QuoteMeta(name)+`\b`).MatchString(help[cmd]) {
					t.Errorf("%s: kpush %s has no flag %s", w.name, cmd, name)
				}
			}
		}
	}
	for _, d := range o.deployments {
		if d.Name != "worker" {
			continue
		}
		args := d.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--servers=dns+srv:_kestrel._tcp.queued") {
			t.Errorf("worker: --servers does not name the headless Service's SRV records: %v", args)
		}
	}
	for _, s := range o.services {
		if s.Name == "queued" && (len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "kestrel" || s.Spec.Ports[0].Protocol != corev1.ProtocolTCP) {
			t.Errorf("Service queued: want the one port named kestrel/TCP, which the SRV name _kestrel._tcp.queued comes from")
		}
	}
}
