package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
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

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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
	node         bool
	nodeMode     string
	cniBin       string
	pauseBin     string
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
	fs.StringVar(&c.nodeMode, "node", "auto", "run the real node (containerd, kubelet, kube-proxy): auto (when root with containerd, runc, iptables and the CNI plugins), true, false")
	fs.StringVar(&c.cniBin, "cni-bin", "", "directory of the CNI plugins (bridge, host-local, loopback, portmap)")
	fs.StringVar(&c.pauseBin, "pause", "", "the pause binary for the node's sandbox image")
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

// decideNode sets c.node from --node: auto runs it where it can run.
func (c *config) decideNode() {
	why := nodeUnavailable(c)
	switch c.nodeMode {
	case "false":
		c.node = false
	case "true":
		if why != "" {
			fatalf("--node=true: the real node cannot run here: %s", why)
		}
		c.node = true
	default:
		c.node = why == ""
		if why != "" {
			logf("no real node: %s (pods run on kwok's fake node only)", why)
		}
	}
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
	// Children get SIGKILL when the thread that started them exits
	// (Pdeathsig); keep this goroutine, which starts them all, on one thread
	// for the life of the process.
	runtime.LockOSThread()
	c.decideNode()
	k := newCluster(c)
	defer os.Remove(c.path("ready"))
	defer k.cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if c.node {
		k.prepareNode()
	}
	etcd, err := startEtcd(c)
	if err != nil {
		fatalf("etcd: %v", err)
	}
	defer etcd.Close()
	k.logReady("etcd ready on 127.0.0.1:%d", c.etcdPort)
	k.startAPIServer()
	var kubelet *kubeletStats
	if c.node {
		if kubelet, err = newKubeletStats(k.p); err != nil {
			fatalf("metrics API: %v", err)
		}
	}
	if err := startMetricsServer(c.metricsPort, k.cs, kubelet); err != nil {
		fatalf("metrics API: %v", err)
	}
	k.startControllerManager()
	if c.kwok {
		k.startSchedulerAndKwok()
	}
	if c.minioBin != "" {
		k.startMinIO()
	}
	defer k.stopChildren()
	if c.node {
		k.startNode()
	}
	steps := []func() error{k.waitMinIO, k.waitControllerManager, k.waitKwok, k.waitNode, k.registerMetrics}
	for _, step := range steps {
		if err := step(); err != nil {
			logf("%v", err)
			return 1
		}
	}
	if err := writeEnv(c, k.s3.endpoint, k.s3.user, k.s3.pass); err != nil {
		fatalf("%v", err)
	}
	if err := os.WriteFile(c.path("ready"), []byte(time.Since(k.start).String()+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	k.logReady("all ready; env in %s", c.path("env"))

	code := 0
	select {
	case s := <-sigs:
		logf("%s: stopping", s)
	case err := <-k.apiDone:
		logf("kube-apiserver exited: %v", err)
		code = 1
	case n := <-k.childDone:
		logf("%s exited; stopping (see %s)", n, c.path("logs", n+".log"))
		code = 1
	}
	_ = os.Remove(c.path("ready"))
	k.stopChildren()
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
	kv("NUR_TESTENV_ETCD", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort))
	if c.node {
		// The real node, and the namespace annotation that puts a
		// namespace's pods on it.
		kv("NUR_TESTENV_NODE", realNodeName)
		kv("NUR_TESTENV_NODE_SELECTOR", realNodeSelector)
	}
	if endpoint != "" {
		if c.node {
			kv("NUR_TEST_IN_CLUSTER_ENDPOINT", fmt.Sprintf("http://%s:%d", nodeIP, c.minioPort))
		}
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
