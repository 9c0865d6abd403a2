package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The real node: containerd (runc, CNI bridge), kubelet and kube-proxy on
// this machine, next to kwok's fake node. Its addresses are fixed so that
// .testenv/env, the API server's certificate and the tests agree on them:
//
//	nodeIP      on the bridge "nur0" (no ports): the node's InternalIP, where
//	            pods reach the API server (the `kubernetes` Service's endpoint)
//	            and MinIO
//	podCIDR     on the CNI bridge "nur-cni0": pod IPs, routed from the host
//	10.96.0.0/16  Service ClusterIPs, by kube-proxy's iptables rules, from
//	            the host and from pods
//
// Pods land on it only from namespaces annotated with realNodeSelector
// (PodNodeSelector admission; every other namespace defaults to kwok's).
const (
	realNodeName     = "nur-node"
	nodeIP           = "10.250.0.1"
	hostBridge       = "nur0"
	cniBridge        = "nur-cni0"
	podCIDR          = "10.85.0.0/24"
	realNodeLabel    = "real"
	realNodeSelector = "type=" + realNodeLabel
	kwokNodeSelector = "type=kwok"
	// PauseImage is the sandbox image containerd runs for every pod; it is
	// imported with the project's images, never pulled.
	pauseImage = "registry.k8s.io/pause:3.10"
)

// nodeTools are the programs the node needs from the system (Debian
// packages containerd, runc, iptables, conntrack).
var nodeTools = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "iptables-save", "iptables-restore", "conntrack"}

// nodeUnavailable says why the real node cannot run here, or "".
func nodeUnavailable(c *config) string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, t := range nodeTools {
		if _, err := exec.LookPath(t); err != nil {
			return t + " not found (apt-get install containerd runc iptables conntrack)"
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if !fileExists(filepath.Join(c.cniBin, p)) {
			return "CNI plugin " + p + " not in " + c.cniBin + " (make testenv-build)"
		}
	}
	return ""
}

func (k *cluster) nodePath(p ...string) string { return k.c.path(append([]string{"node"}, p...)...) }

func (k *cluster) containerdSock() string { return k.nodePath("containerd.sock") }

// prepareNode removes what an earlier node left and gives the host the
// node's address, before the API server and MinIO listen on it.
func (k *cluster) prepareNode() {
	sweepNode(k.c)
	for _, d := range []string{"containerd", "kubelet", "cni", "cni-state"} {
		if err := os.MkdirAll(k.nodePath(d), 0o755); err != nil {
			fatalf("%v", err)
		}
	}
	if err := setupHostNetwork(); err != nil {
		fatalf("node network: %v", err)
	}
}

// startNode starts containerd, kubelet and kube-proxy as children.
// waitNode waits for the node to be Ready.
func (k *cluster) startNode() {
	k.writeNodeConfig()
	k.child("containerd", "containerd", []string{"--config", k.nodePath("containerd.toml")}, nil)
	if err := waitFor(k.ctx, time.Minute, nil, func() error {
		if err := k.childExited(); err != nil {
			return err
		}
		return exec.Command("ctr", "--address", k.containerdSock(), "version").Run()
	}); err != nil {
		fatalf("containerd did not start: %v (see %s)", err, k.c.path("logs", "containerd.log"))
	}
	k.logReady("containerd ready at %s", k.containerdSock())
	if err := importImages(k.c, k.containerdSock(), []imageSpec{pauseImageSpec(k.c)}); err != nil {
		fatalf("pause image: %v", err)
	}
	k.child("kubelet", k.self, []string{"kubelet",
		"--config=" + k.nodePath("kubelet.yaml"),
		"--kubeconfig=" + k.c.path("kubeconfig"),
		"--root-dir=" + k.nodePath("kubelet"),
		"--cert-dir=" + k.nodePath("kubelet", "pki"),
		"--hostname-override=" + realNodeName,
		"--node-ip=" + nodeIP,
		"--node-labels=type=" + realNodeLabel,
	}, nil)
	k.child("kube-proxy", k.self, []string{"kube-proxy",
		"--kubeconfig=" + k.c.path("kubeconfig"),
		"--hostname-override=" + realNodeName,
		"--proxy-mode=iptables",
		"--cluster-cidr=" + podCIDR,
		"--bind-address=" + nodeIP,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(k.c.kcmPort+4),
		"--healthz-bind-address=127.0.0.1:" + strconv.Itoa(k.c.kcmPort+5),
		// Leave the machine's conntrack sysctls and this process's OOM
		// score alone (CAP_SYS_RESOURCE is not ours to use).
		"--conntrack-max-per-core=0",
		"--oom-score-adj=0",
	}, nil)
}

// waitNode waits until the kubelet reports the node Ready.
func (k *cluster) waitNode() error {
	if !k.c.node {
		return nil
	}
	if err := waitFor(k.ctx, 3*time.Minute, nil, func() error {
		if err := k.childExited(); err != nil {
			return err
		}
		n, err := k.cs.CoreV1().Nodes().Get(k.ctx, realNodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s: %s", cond.Reason, cond.Message)
			}
		}
		return errors.New("node has no Ready condition yet")
	}); err != nil {
		return fmt.Errorf("real node did not become Ready: %v (see %s)", err, k.c.path("logs", "kubelet.log"))
	}
	k.logReady("kubelet and kube-proxy ready, node %s at %s, pods in %s", realNodeName, nodeIP, podCIDR)
	return nil
}

// setupHostNetwork gives the host the node address and lets bridged pod
// traffic through iptables (Services between pods on one bridge).
func setupHostNetwork() error {
	for k, v := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":                 "1",
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "1",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "1",
	} {
		if err := os.WriteFile(k, []byte(v), 0o644); err != nil {
			return err
		}
	}
	if err := run("ip", "link", "add", hostBridge, "type", "bridge"); err != nil {
		return err
	}
	if err := run("ip", "addr", "add", nodeIP+"/32", "dev", hostBridge); err != nil {
		return err
	}
	return run("ip", "link", "set", hostBridge, "up")
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeNodeConfig writes containerd's, the CNI's and the kubelet's
// configuration under DIR/node.
func (k *cluster) writeNodeConfig() {
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(containerdConfig, k.nodePath("containerd", "root"), k.nodePath("containerd", "state"),
			k.containerdSock(), pauseImage, k.c.cniBin, k.nodePath("cni")),
		"cni/10-nur.conflist": fmt.Sprintf(cniConfig, cniBridge, podCIDR, k.nodePath("cni-state")),
		"kubelet.yaml":        fmt.Sprintf(kubeletConfig, k.p.caCert, k.containerdSock(), nodeIP),
	}
	for name, body := range files {
		if err := os.WriteFile(k.nodePath(name), []byte(body), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
}

// containerd 1.6 (Debian 12). restrict_oom_score_adj: without
// CAP_SYS_RESOURCE no container may get a lower OOM score than containerd.
const containerdConfig = `version = 2
root = %q
state = %q
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`

const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "nur",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// The kubelet on cgroup v1 (failCgroupV1: false, the cgroupfs driver, which
// containerd 1.6 cannot report), without touching OOM scores, swap or image
// garbage collection (imported images cannot be pulled again), and with
// evictions only when the machine is really short.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
oomScoreAdj: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
enforceNodeAllocatable: [pods]
maxPods: 110
resolvConf: /etc/resolv.conf
registerNode: true
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 5s
shutdownGracePeriod: 0s
localStorageCapacityIsolation: true
`
