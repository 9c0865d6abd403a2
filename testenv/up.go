package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.etcd.io/etcd/server/v3/embed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

type config struct {
	dir          string
	apiPort      int
	etcdPort     int
	kcmPort      int
	metricsPort  int
	minioPort    int
	minioBin     string
	kwok         bool
	bucket       string
	region       string
	readyTimeout time.Duration
}

func parseFlags(name string, args []string) *config {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&c.dir, "dir", ".testenv", "state directory (kubeconfig, env, pki, data, logs)")
	fs.IntVar(&c.apiPort, "apiserver-port", envInt("NUR_TESTENV_APISERVER_PORT", 16443), "kube-apiserver secure port on 127.0.0.1")
	fs.IntVar(&c.etcdPort, "etcd-port", envInt("NUR_TESTENV_ETCD_PORT", 12379), "etcd client port on 127.0.0.1 (peer port is +1)")
	fs.IntVar(&c.kcmPort, "controller-manager-port", envInt("NUR_TESTENV_KCM_PORT", 16257), "kube-controller-manager secure port on 127.0.0.1")
	fs.IntVar(&c.metricsPort, "metrics-port", envInt("NUR_TESTENV_METRICS_PORT", 16260), "fake metrics API (metrics.k8s.io) port on 127.0.0.1")
	fs.IntVar(&c.minioPort, "minio-port", envInt("NUR_TESTENV_MINIO_PORT", 19000), "MinIO S3 port on 127.0.0.1 (console is +1)")
	fs.StringVar(&c.minioBin, "minio", "", "path to the minio binary (empty: no MinIO)")
	fs.BoolVar(&c.kwok, "kwok", true, "run kube-scheduler and kwok with one fake node, so pods get Running/Ready")
	fs.StringVar(&c.bucket, "bucket", "nur-test", "bucket created in MinIO")
	fs.StringVar(&c.region, "region", "us-east-1", "S3 region")
	fs.DurationVar(&c.readyTimeout, "timeout", 5*time.Minute, "wait: how long to wait for readiness")
	_ = fs.Parse(args)
	abs, err := filepath.Abs(c.dir)
	if err != nil {
		fatalf("%v", err)
	}
	c.dir = abs
	return c
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "nur-testenv: "+f+"\n", a...)
	os.Exit(1)
}

func (c *config) path(p ...string) string { return filepath.Join(append([]string{c.dir}, p...)...) }

func logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "nur-testenv %s: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(f, a...))
}

// cmdUp runs the whole environment in the foreground until SIGTERM/SIGINT.
func cmdUp(args []string) int {
	c := parseFlags("up", args)
	start := time.Now()
	// Children get SIGKILL when the thread that started them exits
	// (Pdeathsig); keep this goroutine, which starts them all, on one thread
	// for the life of the process.
	runtime.LockOSThread()
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		fatalf("%v", err)
	}
	_ = os.WriteFile(c.path(".gitignore"), []byte("*\n"), 0o644)
	_ = os.Remove(c.path("ready"))
	if err := os.WriteFile(c.path("pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	defer os.Remove(c.path("ready"))

	// Fresh data on every start; PKI and credentials are kept.
	_ = os.RemoveAll(c.path("data"))
	p := newPKI(c.path("pki"))
	if err := p.ensure(); err != nil {
		fatalf("pki: %v", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	if err := writeKubeconfig(c.path("kubeconfig"), server, p); err != nil {
		fatalf("kubeconfig: %v", err)
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	// 1. etcd, embedded.
	etcd, err := startEtcd(c)
	if err != nil {
		fatalf("etcd: %v", err)
	}
	defer etcd.Close()
	logf("etcd ready on 127.0.0.1:%d (%s)", c.etcdPort, time.Since(start).Round(time.Millisecond))

	// 2. kube-apiserver, in this process.
	apiDone := make(chan error, 1)
	api := apiserver.NewAPIServerCommand()
	api.SetArgs([]string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--tls-cert-file=" + p.serverCert,
		"--tls-private-key-file=" + p.serverKey,
		"--client-ca-file=" + p.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		// No node-lifecycle controller runs, so nothing would lift the
		// not-ready taint this plugin puts on the new fake node.
		"--disable-admission-plugins=TaintNodesByCondition",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=15m",
		"--cert-dir=" + c.path("pki", "apiserver-certs"),
	})
	go func() { apiDone <- api.Execute() }()

	kc, err := clientcmd.BuildConfigFromFlags("", c.path("kubeconfig"))
	if err != nil {
		fatalf("%v", err)
	}
	cs := kubernetes.NewForConfigOrDie(kc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := waitFor(ctx, 3*time.Minute, apiDone, func() error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		fatalf("kube-apiserver did not become ready: %v", err)
	}
	logf("kube-apiserver ready at %s (%s)", server, time.Since(start).Round(time.Millisecond))

	// The fake metrics API (metrics.go), in this process; registered with
	// the aggregator below, once the rest is up.
	if err := startMetricsServer(c.metricsPort, cs); err != nil {
		fatalf("metrics API: %v", err)
	}

	// 3. kube-controller-manager: the same binary, as a child process (the
	// apiserver and the controller-manager both own process-wide globals
	// such as the feature gates and the signal handler).
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	var children []*exec.Cmd
	childDone := make(chan string, 4)
	kcmArgs := []string{"kube-controller-manager",
		"--kubeconfig=" + c.path("kubeconfig"),
		"--authentication-kubeconfig=" + c.path("kubeconfig"),
		"--authorization-kubeconfig=" + c.path("kubeconfig"),
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.kcmPort),
		"--cert-dir=" + c.path("pki", "kcm-certs"),
		"--leader-elect=false",
		"--root-ca-file=" + p.caCert,
		"--service-account-private-key-file=" + p.saKey,
		"--cluster-signing-cert-file=" + p.caCert,
		"--cluster-signing-key-file=" + p.caKey,
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
		// Quick HorizontalPodAutoscalers for the tests (defaults: 15s, 5m,
		// 30s, 5m).
		"--horizontal-pod-autoscaler-sync-period=1s",
		"--horizontal-pod-autoscaler-cpu-initialization-period=1s",
		"--horizontal-pod-autoscaler-initial-readiness-delay=1s",
		"--horizontal-pod-autoscaler-downscale-stabilization=5s",
	}
	kcmCmd, err := startChild(c, "kube-controller-manager", self, kcmArgs, nil, childDone)
	if err != nil {
		fatalf("kube-controller-manager: %v", err)
	}
	children = append(children, kcmCmd)

	// 4. kube-scheduler and kwok (fake kubelet for one fake node).
	if c.kwok {
		if err := os.WriteFile(c.path("kwok.yaml"), []byte(kwokStages()), 0o644); err != nil {
			fatalf("%v", err)
		}
		sch, err := startChild(c, "kube-scheduler", self, []string{"kube-scheduler",
			"--kubeconfig=" + c.path("kubeconfig"),
			"--authentication-kubeconfig=" + c.path("kubeconfig"),
			"--authorization-kubeconfig=" + c.path("kubeconfig"),
			"--authentication-skip-lookup=true",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.kcmPort+2),
			"--cert-dir=" + c.path("pki", "scheduler-certs"),
			"--leader-elect=false",
		}, nil, childDone)
		if err != nil {
			fatalf("kube-scheduler: %v", err)
		}
		children = append(children, sch)
		kw, err := startChild(c, "kwok", self, []string{"kwok",
			"--kubeconfig=" + c.path("kubeconfig"),
			"--config=" + c.path("kwok.yaml"),
			"--manage-nodes-with-annotation-selector=" + fakeNodeAnnotation + "=fake",
			"--node-ip=127.0.0.1",
			"--cidr=10.244.0.1/16",
		}, []string{"HOME=" + c.path("kwok-home")}, childDone)
		if err != nil {
			fatalf("kwok: %v", err)
		}
		children = append(children, kw)
		if _, err := cs.CoreV1().Nodes().Create(ctx, fakeNode("nur-fake-node"), metav1.CreateOptions{}); err != nil {
			fatalf("create fake node: %v", err)
		}
	}

	// 5. MinIO, as a child process.
	var s3 struct{ endpoint, user, pass string }
	if c.minioBin != "" {
		s3.endpoint = fmt.Sprintf("http://127.0.0.1:%d", c.minioPort)
		s3.user, s3.pass, err = minioCreds(c.path("pki", "minio.creds"))
		if err != nil {
			fatalf("%v", err)
		}
		if err := os.MkdirAll(c.path("data", "minio"), 0o755); err != nil {
			fatalf("%v", err)
		}
		mc, err := startChild(c, "minio", c.minioBin, []string{"server", "--quiet",
			"--address", fmt.Sprintf("127.0.0.1:%d", c.minioPort),
			"--console-address", fmt.Sprintf("127.0.0.1:%d", c.minioPort+1),
			c.path("data", "minio")},
			[]string{"MINIO_ROOT_USER=" + s3.user, "MINIO_ROOT_PASSWORD=" + s3.pass,
				"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION=" + c.region,
				"MINIO_CI_CD=1"}, childDone)
		if err != nil {
			fatalf("minio: %v", err)
		}
		children = append(children, mc)
	}
	stopChildren := func() {
		for _, ch := range children {
			if ch.Process != nil {
				_ = ch.Process.Signal(syscall.SIGTERM)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, ch := range children {
			for ch.ProcessState == nil && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if ch.ProcessState == nil && ch.Process != nil {
				_ = ch.Process.Kill()
			}
		}
	}
	defer stopChildren()

	if c.minioBin != "" {
		if err := waitFor(ctx, 2*time.Minute, nil, func() error {
			select {
			case n := <-childDone:
				return fatalErr{fmt.Errorf("%s exited", n)}
			default:
			}
			resp, err := http.Get(s3.endpoint + "/minio/health/ready")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}); err != nil {
			logf("minio did not become ready: %v (see %s)", err, c.path("logs", "minio.log"))
			return 1
		}
		u, _ := url.Parse(s3.endpoint)
		cl, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s3.user, s3.pass, ""), Region: c.region})
		if err != nil {
			fatalf("%v", err)
		}
		if err := cl.MakeBucket(ctx, c.bucket, minio.MakeBucketOptions{Region: c.region}); err != nil {
			if ok, _ := cl.BucketExists(ctx, c.bucket); !ok {
				logf("make bucket %s: %v", c.bucket, err)
				return 1
			}
		}
		logf("minio ready at %s, bucket %s (%s)", s3.endpoint, c.bucket, time.Since(start).Round(time.Millisecond))
	}

	// The controller-manager is working once the serviceaccount controller
	// has created the "default" ServiceAccount.
	if err := waitFor(ctx, 3*time.Minute, nil, func() error {
		select {
		case n := <-childDone:
			return fatalErr{fmt.Errorf("%s exited", n)}
		default:
		}
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		logf("kube-controller-manager did not become ready: %v (see %s)", err, c.path("logs", "kube-controller-manager.log"))
		return 1
	}
	logf("kube-controller-manager ready (%s)", time.Since(start).Round(time.Millisecond))

	if c.kwok {
		if err := waitFor(ctx, 2*time.Minute, nil, func() error {
			select {
			case n := <-childDone:
				return fatalErr{fmt.Errorf("%s exited", n)}
			default:
			}
			n, err := cs.CoreV1().Nodes().Get(ctx, "nur-fake-node", metav1.GetOptions{})
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
			logf("kwok did not make the fake node Ready: %v (see %s)", err, c.path("logs", "kwok.log"))
			return 1
		}
		logf("kube-scheduler and kwok ready, node nur-fake-node (%s)", time.Since(start).Round(time.Millisecond))
	}

	if err := registerMetricsAPI(ctx, cs, kc, c.metricsPort); err != nil {
		logf("metrics API not available: %v", err)
		return 1
	}
	logf("metrics API ready at https://127.0.0.1:%d (%s)", c.metricsPort, time.Since(start).Round(time.Millisecond))

	if err := writeEnv(c, s3.endpoint, s3.user, s3.pass); err != nil {
		fatalf("%v", err)
	}
	if err := os.WriteFile(c.path("ready"), []byte(time.Since(start).String()+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	logf("all ready in %s; env in %s", time.Since(start).Round(time.Millisecond), c.path("env"))

	code := 0
	select {
	case s := <-sigs:
		logf("%s: stopping", s)
	case err := <-apiDone:
		logf("kube-apiserver exited: %v", err)
		code = 1
	case n := <-childDone:
		logf("%s exited; stopping (see %s)", n, c.path("logs", n+".log"))
		code = 1
	}
	_ = os.Remove(c.path("ready"))
	stopChildren()
	etcd.Close()
	_ = os.Remove(c.path("pid"))
	logf("stopped")
	// The apiserver's own shutdown runs off its signal context; do not wait
	// for it: etcd is gone and nothing is left to flush.
	os.Exit(code)
	return code
}

type fatalErr struct{ error }

// waitFor polls f until it succeeds, the timeout passes, f returns a
// fatalErr, or something arrives on died.
func waitFor(ctx context.Context, timeout time.Duration, died <-chan error, f func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if died != nil {
			select {
			case err := <-died:
				return fmt.Errorf("exited: %v", err)
			default:
			}
		}
		last = f()
		if last == nil {
			return nil
		}
		var fe fatalErr
		if errors.As(last, &fe) {
			return fe.error
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("timeout after %s: %v", timeout, last)
}

func startEtcd(c *config) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "nur-testenv"
	cfg.Dir = c.path("data", "etcd")
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort+1))
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{c.path("logs", "etcd.log")}
	cfg.UnsafeNoFsync = true // test data only; much faster on slow disks
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd not ready after 60s")
	}
}

func startChild(c *config, name, bin string, args, env []string, done chan<- string) (*exec.Cmd, error) {
	lf, err := os.Create(c.path("logs", name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		done <- name
	}()
	return cmd, nil
}

func minioCreds(path string) (string, string, error) {
	if b, err := os.ReadFile(path); err == nil {
		parts := strings.Fields(string(b))
		if len(parts) == 2 {
			return parts[0], parts[1], nil
		}
	}
	user := "nur" + randHex(6)
	pass := randHex(20)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", err
	}
	return user, pass, os.WriteFile(path, []byte(user+" "+pass+"\n"), 0o600)
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func writeKubeconfig(path, server string, p *pki) error {
	read := func(f string) []byte {
		b, err := os.ReadFile(f)
		if err != nil {
			fatalf("%v", err)
		}
		return b
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["nur-testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: read(p.caCert)}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: read(p.adminCert), ClientKeyData: read(p.adminKey)}
	cfg.Contexts["nur-testenv"] = &clientcmdapi.Context{Cluster: "nur-testenv", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "nur-testenv"
	return clientcmd.WriteToFile(*cfg, path)
}

func shellQuote(s string) string {
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:+,@=", r)) {
			safe = false
			break
		}
	}
	if safe && s != "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeEnv(c *config, endpoint, user, pass string) error {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(v)) }
	b.WriteString("# written by nur-testenv up; load with: set -a; . .testenv/env; set +a\n")
	kv("KUBECONFIG", c.path("kubeconfig"))
	kv("NUR_TESTENV_DIR", c.dir)
	kv("NUR_TESTENV_BIN", c.path("bin"))
	kv("NUR_TESTENV_KWOK", strconv.FormatBool(c.kwok))
	if endpoint != "" {
		kv("AWS_ENDPOINT_URL", endpoint)
		kv("AWS_ACCESS_KEY_ID", user)
		kv("AWS_SECRET_ACCESS_KEY", pass)
		kv("AWS_REGION", c.region)
		kv("AWS_ALLOW_HTTP", "true")
		kv("NUR_TEST_BUCKET", c.bucket)
	}
	tmp := c.path("env.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.path("env"))
}

func readPid(c *config) int {
	b, err := os.ReadFile(c.path("pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// cmdStatus exits 0 when an `up` is running and ready.
func cmdStatus(args []string) int {
	c := parseFlags("status", args)
	if readPid(c) == 0 || !fileExists(c.path("ready")) {
		return 1
	}
	return 0
}

// cmdWait waits for a background `up` to be ready.
func cmdWait(args []string) int {
	c := parseFlags("wait", args)
	return waitReady(c, nil, time.Now())
}

func modTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func tail(p string, n int) {
	b, err := os.ReadFile(p)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintln(os.Stderr, strings.Join(lines, "\n"))
}

// cmdDown stops a running `up` and waits for it to be gone.
func cmdDown(args []string) int {
	c := parseFlags("down", args)
	pid := readPid(c)
	if pid == 0 {
		fmt.Println("nur-testenv: not running")
		return 0
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			fmt.Println("nur-testenv: stopped")
			_ = os.Remove(c.path("ready"))
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = os.Remove(c.path("ready"))
	fmt.Println("nur-testenv: killed")
	return 0
}
