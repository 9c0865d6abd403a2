package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// kubeletStats reads the real node's usage from its kubelet's summary API
// (/stats/summary: CPU as a rate over the last samples, memory as the
// working set, both measured by the kubelet's cAdvisor), as metrics-server
// does; a second within the same second reuses the first answer.
type kubeletStats struct {
	url    string
	client *http.Client

	mu      sync.Mutex
	fetched time.Time
	usage   map[string]map[string]corev1.ResourceList // "ns/pod" -> container -> usage
}

func newKubeletStats(p *pki) (*kubeletStats, error) {
	cert, err := tls.LoadX509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return nil, err
	}
	// The kubelet serves a self-signed certificate of its own: like the API
	// server (no --kubelet-certificate-authority), do not verify it.
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} // #nosec G402 -- testenv's own kubelet on a local address
	return &kubeletStats{
		url:    fmt.Sprintf("https://%s:10250/stats/summary?only_cpu_and_memory=true", nodeIP),
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}, nil
}

// containers is the usage of each container of the pod, nil when the
// kubelet has no figures for it (yet).
func (k *kubeletStats) containers(ctx context.Context, ns, pod string) (map[string]corev1.ResourceList, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.fetched) > time.Second {
		usage, err := k.fetch(ctx)
		if err != nil {
			return nil, err
		}
		k.usage, k.fetched = usage, time.Now()
	}
	return k.usage[ns+"/"+pod], nil
}

func (k *kubeletStats) fetch(ctx context.Context) (map[string]map[string]corev1.ResourceList, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet summary: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet summary: %s", resp.Status)
	}
	var summary statsv1alpha1.Summary
	if err := json.NewDecoder(resp.Body).Decode(&summary); err != nil {
		return nil, fmt.Errorf("kubelet summary: %w", err)
	}
	out := map[string]map[string]corev1.ResourceList{}
	for _, p := range summary.Pods {
		cs := map[string]corev1.ResourceList{}
		for _, c := range p.Containers {
			if c.CPU == nil || c.CPU.UsageNanoCores == nil || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
				continue
			}
			cs[c.Name] = corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(*c.CPU.UsageNanoCores), resource.Nano),
				corev1.ResourceMemory: *resource.NewQuantity(int64(*c.Memory.WorkingSetBytes), resource.BinarySI),
			}
		}
		out[p.PodRef.Namespace+"/"+p.PodRef.Name] = cs
	}
	return out, nil
}
