package deploy

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/pelletier/go-toml/v2"

	"github.com/plugind/plugind/config"
)

const manifests = "kubernetes"

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding strictly into it refuses anything else.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Images []image `json:"images"`
}

type image struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// bundle is every manifest, decoded.
type bundle struct {
	deployment appsv1.Deployment
	service    corev1.Service
	configMap  corev1.ConfigMap
	secret     corev1.Secret
	hpa        autoscalingv2.HorizontalPodAutoscaler
	pdb        policyv1.PodDisruptionBudget
}

// load decodes kustomization.yaml and every resource it lists strictly
// into its API type, and checks that it lists every manifest there is.
func load(t *testing.T) (kustomization, bundle) {
	t.Helper()
	var k kustomization
	decode(t, "kustomization.yaml", &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(manifests, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, files %v: each manifest must be listed once", got, want)
	}

	var b bundle
	targets := map[string]any{
		"Deployment": &b.deployment, "Service": &b.service, "ConfigMap": &b.configMap,
		"Secret": &b.secret, "HorizontalPodAutoscaler": &b.hpa, "PodDisruptionBudget": &b.pdb,
	}
	seen := map[string]string{}
	for _, f := range k.Resources {
		var meta struct {
			Kind string `json:"kind"`
		}
		data := read(t, f)
		if err := yaml.Unmarshal(data, &meta); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		target, ok := targets[meta.Kind]
		if !ok {
			t.Fatalf("%s: kind %q has no check here", f, meta.Kind)
		}
		if prev, dup := seen[meta.Kind]; dup {
			t.Fatalf("%s and %s are both %s", prev, f, meta.Kind)
		}
		seen[meta.Kind] = f
		decode(t, f, target)
	}
	for kind := range targets {
		if _, ok := seen[kind]; !ok {
			t.Errorf("no %s among the resources", kind)
		}
	}
	return k, b
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifests, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decode refuses unknown or misspelt fields and duplicate keys.
func decode(t *testing.T, name string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(read(t, name), into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// serverConfig loads the ConfigMap's prest.toml, with the Secret's
// secrets file, through the server's own config package: what a pod
// would start with.
func serverConfig(t *testing.T, b bundle) config.Config {
	t.Helper()
	dir := t.TempDir()
	text, ok := b.configMap.Data["prest.toml"]
	if !ok {
		t.Fatal("the ConfigMap has no prest.toml")
	}
	conf := filepath.Join(dir, "prest.toml")
	secrets := filepath.Join(dir, "secrets.toml")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secrets, []byte(b.secret.StringData["secrets.toml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(nil, []string{"PREST_CONF=" + conf, "PREST_PLUGINS_SECRETSFILE=" + secrets})
	if err != nil {
		t.Fatalf("prest.toml of the ConfigMap: %v", err)
	}
	if len(cfg.Unknown) > 0 {
		t.Errorf("prest.toml of the ConfigMap has keys plugind does not use: %v", cfg.Unknown)
	}
	// The secrets file was read from here; the pod reads it where the
	// ConfigMap says.
	var file struct {
		Plugins struct {
			SecretsFile string `toml:"secretsfile"`
		} `toml:"plugins"`
	}
	if err := toml.Unmarshal([]byte(text), &file); err != nil {
		t.Fatal(err)
	}
	cfg.Plugins.SecretsFile = file.Plugins.SecretsFile
	return cfg
}

func TestKubernetesManifests(t *testing.T) {
	k, b := load(t)
	cfg := serverConfig(t, b)
	d := b.deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers: %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("image", func(t *testing.T) {
		if !slices.ContainsFunc(k.Images, func(i image) bool { return i.Name == c.Image }) {
			t.Errorf("image %q is not set by the kustomization's images", c.Image)
		}
		if cfg.Plugins.Build != config.BuildOff {
			t.Errorf("plugins.build = %q: the runtime image has no go command, it must be %q", cfg.Plugins.Build, config.BuildOff)
		}
	})

	t.Run("probes hit the configured port", func(t *testing.T) {
		port := containerPort(t, c, "http")
		if int(port) != cfg.HTTP.Port {
			t.Errorf("containerPort http %d, prest.toml http.port %d", port, cfg.HTTP.Port)
		}
		if cfg.Auth.Probes {
			t.Error("auth.probes is on: kubelet probes carry no key")
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"startupProbe", c.StartupProbe, "/readyz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
			{"livenessProbe", c.LivenessProbe, "/healthz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: none, or not an HTTP GET", p.name)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("%s path %q, want %q", p.name, g.Path, p.path)
			}
			if got := resolvePort(t, c, g.Port); int(got) != cfg.HTTP.Port {
				t.Errorf("%s port %v is %d, the server listens on %d", p.name, g.Port.String(), got, cfg.HTTP.Port)
			}
		}
		if s := c.StartupProbe; s != nil && time.Duration(s.PeriodSeconds*s.FailureThreshold)*time.Second < 2*time.Minute {
			t.Errorf("startup probe allows %ds: less than a warm-up may take (2 min)", s.PeriodSeconds*s.FailureThreshold)
		}
	})

	t.Run("shutdown fits the grace period", func(t *testing.T) {
		lc := cfg.Lifecycle
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("no terminationGracePeriodSeconds")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		if lc.ServerShutdownDelay <= 0 {
			t.Error("lifecycle.serverShutdownDelay is 0: endpoints are not drained before the server stops")
		}
		if lc.ServerShutdownDelay+lc.ServerShutdownTimeout >= grace {
			t.Errorf("serverShutdownDelay %s + serverShutdownTimeout %s >= terminationGracePeriodSeconds %s: SIGKILL cuts requests",
				lc.ServerShutdownDelay, lc.ServerShutdownTimeout, grace)
		}
		if r := c.ReadinessProbe; r != nil && time.Duration(r.PeriodSeconds*r.FailureThreshold)*time.Second >= lc.ServerShutdownDelay {
			t.Errorf("readiness notices a draining pod after %ds, not within serverShutdownDelay %s", r.PeriodSeconds*r.FailureThreshold, lc.ServerShutdownDelay)
		}
	})

	t.Run("security context", func(t *testing.T) {
		psc, sc := pod.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Error("the pod must run as a non-root user")
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("the root file system must be read-only")
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("privilege escalation must be off")
		}
		if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Error("capabilities: drop ALL, add none")
		}
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Error("no CPU request: the HPA's utilisation needs one")
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Error("no memory limit")
		}
	})

	t.Run("files the server reads and writes", func(t *testing.T) {
		conf := env(c, "PREST_CONF")
		if _, v := mountFor(pod, c, conf); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != b.configMap.Name {
			t.Errorf("PREST_CONF %q is not the ConfigMap %s", conf, b.configMap.Name)
		}
		if _, v := mountFor(pod, c, cfg.Plugins.SecretsFile); v == nil || v.Secret == nil || v.Secret.SecretName != b.secret.Name {
			t.Errorf("plugins.secretsfile %q is not in the Secret %s", cfg.Plugins.SecretsFile, b.secret.Name)
		} else if _, ok := b.secret.StringData[path.Base(cfg.Plugins.SecretsFile)]; !ok {
			t.Errorf("the Secret has no key %s", path.Base(cfg.Plugins.SecretsFile))
		}
		// With a read-only root, what the server writes needs a volume.
		if m, v := mountFor(pod, c, cfg.Tasks.Dir); v == nil || m.ReadOnly || v.EmptyDir == nil && v.PersistentVolumeClaim == nil {
			t.Errorf("tasks.dir %q is on no writable volume", cfg.Tasks.Dir)
		}
		if m, _ := mountFor(pod, c, cfg.Plugins.CacheDir); m != nil && cfg.Plugins.Build == config.BuildOff {
			t.Errorf("plugins.cachedir %q is mounted over (%s): prebuilt mode serves the image's artifacts", cfg.Plugins.CacheDir, m.Name)
		}
	})

	t.Run("selectors", func(t *testing.T) {
		podLabels := d.Spec.Template.Labels
		matches := func(sel map[string]string) bool {
			for k, v := range sel {
				if podLabels[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}
		if d.Spec.Selector == nil || !matches(d.Spec.Selector.MatchLabels) {
			t.Error("the Deployment's selector does not match its pods")
		}
		if !matches(b.service.Spec.Selector) {
			t.Error("the Service selects no plugind pod")
		}
		if b.pdb.Spec.Selector == nil || !matches(b.pdb.Spec.Selector.MatchLabels) {
			t.Error("the PodDisruptionBudget selects no plugind pod")
		}
		for _, p := range b.service.Spec.Ports {
			if resolvePort(t, c, p.TargetPort) != int32(cfg.HTTP.Port) {
				t.Errorf("Service port %s targets %s, not the server's port", p.Name, p.TargetPort.String())
			}
		}
		ref := b.hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("the HPA scales %s %s, not the Deployment", ref.Kind, ref.Name)
		}
		if min := b.hpa.Spec.MinReplicas; min == nil || *min < 2 {
			t.Error("HPA minReplicas below 2: the disruption budget leaves no replica serving")
		}
	})
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

// resolvePort is a named or numbered port's number.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.String {
		return containerPort(t, c, p.StrVal)
	}
	return p.IntVal
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// mountFor is the mount that holds file, the deepest one, and its
// volume; both nil if none does.
func mountFor(pod corev1.PodSpec, c corev1.Container, file string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		return nil, nil
	}
	for i, v := range pod.Volumes {
		if v.Name == best.Name {
			return best, &pod.Volumes[i]
		}
	}
	return nil, nil
}
