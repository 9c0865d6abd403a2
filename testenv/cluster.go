package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// cluster is what `up` starts, one method per component: the API server in
// this process, the controller-manager, scheduler, kwok and MinIO as
// children of this binary (process-wide flags and signal handlers keep
// them out of one process).
type cluster struct {
	c      *config
	start  time.Time
	p      *pki
	server string
	kc     *rest.Config
	cs     *kubernetes.Clientset
	ctx    context.Context
	cancel context.CancelFunc
	self   string

	apiDone   chan error
	childDone chan string
	children  []*exec.Cmd
	s3        struct{ endpoint, user, pass string }
}

// newCluster prepares the state directory: logs, pid, fresh data, the PKI
// (kept across starts) and the kubeconfig.
func newCluster(c *config) *cluster {
	k := &cluster{c: c, start: time.Now(), apiDone: make(chan error, 1), childDone: make(chan string, 4)}
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		fatalf("%v", err)
	}
	_ = os.WriteFile(c.path(".gitignore"), []byte("*\n"), 0o644)
	_ = os.Remove(c.path("ready"))
	if err := os.WriteFile(c.path("pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	_ = os.RemoveAll(c.path("data"))
	k.p = newPKI(c.path("pki"))
	if err := k.p.ensure(); err != nil {
		fatalf("pki: %v", err)
	}
	k.server = fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	if err := writeKubeconfig(c.path("kubeconfig"), k.server, k.p); err != nil {
		fatalf("kubeconfig: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	k.self = self
	k.ctx, k.cancel = context.WithCancel(context.Background())
	return k
}

func (k *cluster) logReady(f string, a ...any) {
	logf(f+" (%s)", append(a, time.Since(k.start).Round(time.Millisecond))...)
}

// startAPIServer runs kube-apiserver in this process and waits for /readyz.
func (k *cluster) startAPIServer() {
	if err := os.WriteFile(k.c.path("admission.yaml"), []byte(fmt.Sprintf(admissionConfig, k.c.path("podnodeselector.yaml"))), 0o644); err != nil {
		fatalf("%v", err)
	}
	if err := os.WriteFile(k.c.path("podnodeselector.yaml"), []byte(fmt.Sprintf(podNodeSelectorConfig, kwokNodeSelector)), 0o644); err != nil {
		fatalf("%v", err)
	}
	// Without the real node everything stays on loopback; with it, pods
	// reach the API server at the node's address (the `kubernetes`
	// Service's endpoint).
	bind, advertise, endpoints := "127.0.0.1", "127.0.0.1", "none"
	if k.c.node {
		bind, advertise, endpoints = "0.0.0.0", nodeIP, "lease"
	}
	api := apiserver.NewAPIServerCommand()
	api.SetArgs([]string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", k.c.etcdPort),
		"--bind-address=" + bind,
		"--advertise-address=" + advertise,
		"--secure-port=" + strconv.Itoa(k.c.apiPort),
		"--tls-cert-file=" + k.p.serverCert,
		"--tls-private-key-file=" + k.p.serverKey,
		"--client-ca-file=" + k.p.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + k.p.saPub,
		"--service-account-signing-key-file=" + k.p.saKey,
		"--authorization-mode=RBAC",
		// As large as a real cluster's: a thousand functions need a
		// thousand ClusterIPs.
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=" + endpoints,
		// kubectl logs/exec: the API server authenticates to the kubelet
		// with the admin certificate.
		"--kubelet-client-certificate=" + k.p.adminCert,
		"--kubelet-client-key=" + k.p.adminKey,
		"--kubelet-preferred-address-types=InternalIP",
		// Each namespace's pods go to kwok's fake node unless the
		// namespace asks for the real node (testenv's README).
		"--enable-admission-plugins=PodNodeSelector",
		"--admission-control-config-file=" + k.c.path("admission.yaml"),
		// No node-lifecycle controller runs, so nothing would lift the
		// not-ready taint this plugin puts on the new fake node.
		"--disable-admission-plugins=TaintNodesByCondition",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=15m",
		"--cert-dir=" + k.c.path("pki", "apiserver-certs"),
	})
	go func() { k.apiDone <- api.Execute() }()
	kc, err := clientcmd.BuildConfigFromFlags("", k.c.path("kubeconfig"))
	if err != nil {
		fatalf("%v", err)
	}
	k.kc = kc
	k.cs = kubernetes.NewForConfigOrDie(kc)
	if err := waitFor(k.ctx, 3*time.Minute, k.apiDone, func() error {
		_, err := k.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(k.ctx)
		return err
	}); err != nil {
		fatalf("kube-apiserver did not become ready: %v", err)
	}
	k.logReady("kube-apiserver ready at %s", k.server)
}

const admissionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodNodeSelector
  path: %s
`

const podNodeSelectorConfig = `podNodeSelectorPluginConfig:
  clusterDefaultNodeSelector: %q
`

func (k *cluster) child(name, bin string, args, env []string) {
	cmd, err := startChild(k.c, name, bin, args, env, k.childDone)
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	k.children = append(k.children, cmd)
}

// startControllerManager runs kube-controller-manager as a child.
func (k *cluster) startControllerManager() {
	kcmArgs := []string{"kube-controller-manager",
		"--kubeconfig=" + k.c.path("kubeconfig"),
		"--authentication-kubeconfig=" + k.c.path("kubeconfig"),
		"--authorization-kubeconfig=" + k.c.path("kubeconfig"),
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(k.c.kcmPort),
		"--cert-dir=" + k.c.path("pki", "kcm-certs"),
		"--leader-elect=false",
		"--root-ca-file=" + k.p.caCert,
		"--service-account-private-key-file=" + k.p.saKey,
		"--cluster-signing-cert-file=" + k.p.caCert,
		"--cluster-signing-key-file=" + k.p.caKey,
		"--controllers=" + strings.Join([]string{
			"deployment-controller", "replicaset-controller", "statefulset-controller",
			"daemonset-controller", "job-controller", "cronjob-controller",
			"garbage-collector-controller", "namespace-controller",
			"horizontal-pod-autoscaler-controller", "disruption-controller",
			"serviceaccount-controller", "serviceaccount-token-controller",
			"root-ca-certificate-publisher-controller",
			"endpoints-controller", "endpointslice-controller",
			"resourcequota-controller", "ttl-after-finished-controller",
			"pod-garbage-collector-controller", "clusterrole-aggregation-controller",
			"replicationcontroller-controller",
		}, ","),
		"--concurrent-gc-syncs=5",
		// No client-side rate limit (as kwokctl's --disable-qps-limits) and
		// more workers, so that a thousand functions roll out at the API
		// server's pace, not at the default 20 requests/s shared by every
		// controller (bench/ nur-bench-operator).
		"--kube-api-qps=5000",
		"--kube-api-burst=10000",
		"--concurrent-deployment-syncs=20",
		"--concurrent-replicaset-syncs=20",
		"--concurrent-service-endpoint-syncs=20",
		"--concurrent-endpoint-syncs=20",
		// Quick HorizontalPodAutoscalers for the tests (defaults: 15s, 5m,
		// 30s, 5m).
		"--horizontal-pod-autoscaler-sync-period=1s",
		"--horizontal-pod-autoscaler-cpu-initialization-period=1s",
		"--horizontal-pod-autoscaler-initial-readiness-delay=1s",
		"--horizontal-pod-autoscaler-downscale-stabilization=5s",
	}
	k.child("kube-controller-manager", k.self, kcmArgs, nil)
}

// startSchedulerAndKwok runs kube-scheduler and kwok (a fake kubelet for
// one fake node) as children, and creates the node.
func (k *cluster) startSchedulerAndKwok() {
	if err := os.WriteFile(k.c.path("kwok.yaml"), []byte(kwokStages()), 0o644); err != nil {
		fatalf("%v", err)
	}
	k.child("kube-scheduler", k.self, []string{"kube-scheduler",
		"--kubeconfig=" + k.c.path("kubeconfig"),
		"--authentication-kubeconfig=" + k.c.path("kubeconfig"),
		"--authorization-kubeconfig=" + k.c.path("kubeconfig"),
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(k.c.kcmPort+2),
		"--cert-dir=" + k.c.path("pki", "scheduler-certs"),
		"--leader-elect=false",
		"--kube-api-qps=5000",
		"--kube-api-burst=10000",
	}, nil)
	k.child("kwok", k.self, []string{"kwok",
		"--kubeconfig=" + k.c.path("kubeconfig"),
		"--config=" + k.c.path("kwok.yaml"),
		"--manage-nodes-with-annotation-selector=" + fakeNodeAnnotation + "=fake",
		"--node-ip=127.0.0.1",
		"--cidr=10.244.0.1/16",
	}, []string{"HOME=" + k.c.path("kwok-home")})
	if _, err := k.cs.CoreV1().Nodes().Create(k.ctx, fakeNode("nur-fake-node"), metav1.CreateOptions{}); err != nil {
		fatalf("create fake node: %v", err)
	}
}

// startMinIO runs MinIO as a child, with credentials kept in the PKI dir.
func (k *cluster) startMinIO() {
	c := k.c
	k.s3.endpoint = fmt.Sprintf("http://127.0.0.1:%d", c.minioPort)
	listen := "127.0.0.1"
	if c.node {
		listen = "" // also on the node's address, for pods
	}
	var err error
	k.s3.user, k.s3.pass, err = minioCreds(c.path("pki", "minio.creds"))
	if err != nil {
		fatalf("%v", err)
	}
	if err := os.MkdirAll(c.path("data", "minio"), 0o755); err != nil {
		fatalf("%v", err)
	}
	k.child("minio", c.minioBin, []string{"server", "--quiet",
		"--address", fmt.Sprintf("%s:%d", listen, c.minioPort),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", c.minioPort+1),
		c.path("data", "minio")},
		[]string{"MINIO_ROOT_USER=" + k.s3.user, "MINIO_ROOT_PASSWORD=" + k.s3.pass,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION=" + c.region,
			"MINIO_CI_CD=1"})
}

// childExited is a fatalErr when a child has exited.
func (k *cluster) childExited() error {
	select {
	case n := <-k.childDone:
		return fatalErr{fmt.Errorf("%s exited", n)}
	default:
		return nil
	}
}

// waitMinIO waits for MinIO's readiness and creates the test bucket.
func (k *cluster) waitMinIO() error {
	if k.c.minioBin == "" {
		return nil
	}
	if err := waitFor(k.ctx, 2*time.Minute, nil, func() error {
		if err := k.childExited(); err != nil {
			return err
		}
		resp, err := http.Get(k.s3.endpoint + "/minio/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("minio did not become ready: %v (see %s)", err, k.c.path("logs", "minio.log"))
	}
	u, _ := url.Parse(k.s3.endpoint)
	cl, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(k.s3.user, k.s3.pass, ""), Region: k.c.region})
	if err != nil {
		return err
	}
	if err := cl.MakeBucket(k.ctx, k.c.bucket, minio.MakeBucketOptions{Region: k.c.region}); err != nil {
		if ok, _ := cl.BucketExists(k.ctx, k.c.bucket); !ok {
			return fmt.Errorf("make bucket %s: %v", k.c.bucket, err)
		}
	}
	k.logReady("minio ready at %s, bucket %s", k.s3.endpoint, k.c.bucket)
	return nil
}

// waitControllerManager waits until the serviceaccount controller has
// created the "default" ServiceAccount.
func (k *cluster) waitControllerManager() error {
	if err := waitFor(k.ctx, 3*time.Minute, nil, func() error {
		if err := k.childExited(); err != nil {
			return err
		}
		_, err := k.cs.CoreV1().ServiceAccounts("default").Get(k.ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("kube-controller-manager did not become ready: %v (see %s)", err, k.c.path("logs", "kube-controller-manager.log"))
	}
	k.logReady("kube-controller-manager ready")
	return nil
}

// waitKwok waits until kwok reports the fake node Ready.
func (k *cluster) waitKwok() error {
	if !k.c.kwok {
		return nil
	}
	if err := waitFor(k.ctx, 2*time.Minute, nil, func() error {
		if err := k.childExited(); err != nil {
			return err
		}
		n, err := k.cs.CoreV1().Nodes().Get(k.ctx, "nur-fake-node", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == "True" {
				return nil
			}
		}
		return errors.New("fake node not Ready yet")
	}); err != nil {
		return fmt.Errorf("kwok did not make the fake node Ready: %v (see %s)", err, k.c.path("logs", "kwok.log"))
	}
	k.logReady("kube-scheduler and kwok ready, node nur-fake-node")
	return nil
}

// registerMetrics registers the fake metrics API (metrics.go) with the
// aggregator.
func (k *cluster) registerMetrics() error {
	if err := registerMetricsAPI(k.ctx, k.cs, k.kc, k.c.metricsPort); err != nil {
		return fmt.Errorf("metrics API not available: %v", err)
	}
	k.logReady("metrics API ready at https://127.0.0.1:%d", k.c.metricsPort)
	return nil
}

// stopChildren sends SIGTERM to every child, and SIGKILL to those still
// running after 10 s; then it sweeps what the real node leaves behind.
func (k *cluster) stopChildren() {
	if k.c.node {
		defer sweepNode(k.c)
	}
	for _, ch := range k.children {
		if ch.Process != nil {
			_ = ch.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, ch := range k.children {
		for ch.ProcessState == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if ch.ProcessState == nil && ch.Process != nil {
			_ = ch.Process.Kill()
		}
	}
}
