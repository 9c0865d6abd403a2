// Command nur-testenv starts a real Kubernetes control plane (embedded etcd,
// kube-apiserver and kube-controller-manager, all built from the Kubernetes
// Go modules) plus MinIO for Nur's tests, and doubles as kubectl.
//
//	nur-testenv start --dir .testenv --minio PATH  start `up` in the background, wait until ready
//	nur-testenv up   --dir .testenv --minio PATH   run everything (foreground)
//	nur-testenv wait --dir .testenv                wait until `up` is ready
//	nur-testenv down --dir .testenv                stop a running `up`
//	nur-testenv kubectl ...                        kubectl (also when argv[0] is "kubectl")
//	nur-testenv import-image --dir .testenv --image REF=BINARY[,ARG...]  into the real node
//	nur-testenv kube-controller-manager|kube-scheduler|kwok|kubelet|kube-proxy ...  used by `up`
//	nur-testenv kube-apiserver ...                 a second API server (tests of a cluster without Nur)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kubeproxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		runKubectl()
		return
	}
	if len(os.Args) < 2 {
		usage()
	}
	sub := os.Args[1]
	rest := os.Args[2:]
	switch sub {
	case "kubectl":
		os.Args = append([]string{"kubectl"}, rest...)
		runKubectl()
	case "kube-apiserver":
		// A second API server for tests that need a cluster without
		// Nur's CRD (testkit's TestEnv::bare_api_server).
		os.Args = append([]string{"kube-apiserver"}, rest...)
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Args = append([]string{"kube-controller-manager"}, rest...)
		os.Exit(cli.Run(kcm.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(runScheduler(rest))
	case "kwok":
		os.Exit(runKwok(rest))
	case "kubelet":
		os.Args = append([]string{"kubelet"}, rest...)
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "kube-proxy":
		os.Args = append([]string{"kube-proxy"}, rest...)
		os.Exit(cli.Run(kubeproxy.NewProxyCommand()))
	case "import-image":
		os.Exit(cmdImport(rest))
	case "up":
		os.Exit(cmdUp(rest))
	case "start":
		os.Exit(cmdStart(rest))
	case "wait":
		os.Exit(cmdWait(rest))
	case "down":
		os.Exit(cmdDown(rest))
	case "status":
		os.Exit(cmdStatus(rest))
	default:
		usage()
	}
}

func runKubectl() {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: nur-testenv up|wait|down|status --dir DIR | kubectl ... | kube-controller-manager ...")
	os.Exit(2)
}
