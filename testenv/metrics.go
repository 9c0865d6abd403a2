package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// testenv's metrics-server: the metrics.k8s.io/v1beta1 API, read by the
// HorizontalPodAutoscaler controller and `kubectl top` through the
// apiserver's aggregator like the real one. Pods on the real node report
// the usage their kubelet measures (kubelet_stats.go); kwok's pods, which
// run nothing, report the usage written in their annotations (0 when
// absent).
const (
	cpuAnnotation    = "testenv.nur.dev/cpu"
	memoryAnnotation = "testenv.nur.dev/memory"
	metricsWindow    = 15 * time.Second
	metricsService   = "nur-testenv-metrics"
	metricsNamespace = "kube-system"
)

var (
	metricsScheme = runtime.NewScheme()
	metricsCodecs = serializer.NewCodecFactory(metricsScheme)
	metricsGV     = metricsv1beta1.SchemeGroupVersion
)

func init() {
	if err := metricsv1beta1.AddToScheme(metricsScheme); err != nil {
		panic(err)
	}
}

type metricsServer struct {
	cs      kubernetes.Interface
	kubelet *kubeletStats // nil without the real node
}

// startMetricsServer listens on 127.0.0.1:port (TLS, a throwaway
// self-signed certificate) and serves in the background.
func startMetricsServer(port int, cs kubernetes.Interface, kubelet *kubeletStats) error {
	cert, err := selfSignedCert()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           &metricsServer{cs: cs, kubelet: kubelet},
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("metrics API server: %v", err)
		}
	}()
	return nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: metricsService},
		NotBefore:    now,
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", metricsService + "." + metricsNamespace + ".svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// registerMetricsAPI points the aggregator at the server: an ExternalName
// Service (the aggregator resolves it to externalName:port; ClusterIPs lead
// nowhere here) and the APIService v1beta1.metrics.k8s.io.
func registerMetricsAPI(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsService, Namespace: metricsNamespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "127.0.0.1",
			Ports: []corev1.ServicePort{{
				Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port)),
			}},
		},
	}
	if _, err := cs.CoreV1().Services(metricsNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service: %w", err)
	}
	ac, err := aggregator.NewForConfig(cfg)
	if err != nil {
		return err
	}
	p := int32(port)
	apiSvc := &apiregv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: metricsGV.Version + "." + metricsGV.Group},
		Spec: apiregv1.APIServiceSpec{
			Service:               &apiregv1.ServiceReference{Namespace: metricsNamespace, Name: metricsService, Port: &p},
			Group:                 metricsGV.Group,
			Version:               metricsGV.Version,
			InsecureSkipTLSVerify: true,
			GroupPriorityMinimum:  100,
			VersionPriority:       100,
		},
	}
	if _, err := ac.ApiregistrationV1().APIServices().Create(ctx, apiSvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiservice: %w", err)
	}
	return waitFor(ctx, 2*time.Minute, nil, func() error {
		a, err := ac.ApiregistrationV1().APIServices().Get(ctx, apiSvc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range a.Status.Conditions {
			if c.Type == apiregv1.Available {
				if c.Status == apiregv1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("APIService %s not available: %s: %s", a.Name, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("APIService %s has no Available condition yet", a.Name)
	})
}

func (s *metricsServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	if req.URL.Path == "/openapi/v2" {
		// An empty document: the aggregator's OpenAPI controller keeps
		// retrying (and logging) an APIService that has none.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"swagger":"2.0","info":{"title":"nur-testenv metrics","version":"v1beta1"},"paths":{}}`))
		return
	}
	prefix := "/apis/" + metricsGV.String()
	sub, ok := strings.CutPrefix(req.URL.Path, prefix)
	parts := strings.Split(strings.Trim(sub, "/"), "/")
	if strings.Trim(sub, "/") == "" {
		parts = nil
	}
	var (
		obj runtime.Object
		err error
	)
	switch {
	case !ok || req.Method != http.MethodGet:
		err = apierrors.NewNotFound(metricsGV.WithResource("").GroupResource(), req.URL.Path)
	case len(parts) == 0:
		s.write(w, req, discovery())
		return
	case len(parts) == 1 && parts[0] == "pods":
		obj, err = s.podList(ctx, "", req)
	case len(parts) == 3 && parts[0] == "namespaces" && parts[2] == "pods":
		obj, err = s.podList(ctx, parts[1], req)
	case len(parts) == 4 && parts[0] == "namespaces" && parts[2] == "pods":
		obj, err = s.pod(ctx, parts[1], parts[3])
	case len(parts) == 1 && parts[0] == "nodes":
		obj, err = s.nodeList(ctx, req)
	case len(parts) == 2 && parts[0] == "nodes":
		obj, err = s.node(ctx, parts[1])
	default:
		err = apierrors.NewNotFound(metricsGV.WithResource("").GroupResource(), req.URL.Path)
	}
	if err != nil {
		responsewriters.ErrorNegotiated(err, metricsCodecs, metricsGV, w, req)
		return
	}
	s.write(w, req, obj)
}

func (s *metricsServer) write(w http.ResponseWriter, req *http.Request, obj runtime.Object) {
	responsewriters.WriteObjectNegotiated(metricsCodecs, negotiation.DefaultEndpointRestrictions, metricsGV, w, req, http.StatusOK, obj, false)
}

func discovery() *metav1.APIResourceList {
	verbs := metav1.Verbs{"get", "list"}
	return &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: metricsGV.String(),
		APIResources: []metav1.APIResource{
			{Name: "nodes", Kind: "NodeMetrics", Namespaced: false, Verbs: verbs},
			{Name: "pods", Kind: "PodMetrics", Namespaced: true, Verbs: verbs},
		},
	}
}

func selectors(req *http.Request) (metav1.ListOptions, error) {
	q := req.URL.Query()
	opts := metav1.ListOptions{}
	if v := q.Get("labelSelector"); v != "" {
		if _, err := labels.Parse(v); err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
		opts.LabelSelector = v
	}
	if v := q.Get("fieldSelector"); v != "" {
		if _, err := fields.ParseSelector(v); err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
		opts.FieldSelector = v
	}
	return opts, nil
}

func (s *metricsServer) podList(ctx context.Context, ns string, req *http.Request) (runtime.Object, error) {
	opts, err := selectors(req)
	if err != nil {
		return nil, err
	}
	pods, err := s.cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := &metricsv1beta1.PodMetricsList{}
	for i := range pods.Items {
		if m := s.podMetrics(ctx, &pods.Items[i]); m != nil {
			out.Items = append(out.Items, *m)
		}
	}
	return out, nil
}

func (s *metricsServer) pod(ctx context.Context, ns, name string) (runtime.Object, error) {
	pod, err := s.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		if m := s.podMetrics(ctx, pod); m != nil {
			return m, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	return nil, apierrors.NewNotFound(metricsv1beta1.Resource("pods"), name)
}

// podMetrics is the usage of a Running pod: on the real node, what its
// kubelet measured (nil while it has no figures, as metrics-server); on
// kwok's node, its annotations' values on its first container, 0 on the
// others; nil for a pod in any other phase (the real metrics-server has
// nothing for those either).
func (s *metricsServer) podMetrics(ctx context.Context, pod *corev1.Pod) *metricsv1beta1.PodMetrics {
	if pod.Status.Phase != corev1.PodRunning || len(pod.Spec.Containers) == 0 {
		return nil
	}
	var measured map[string]corev1.ResourceList
	if pod.Spec.NodeName == realNodeName && s.kubelet != nil {
		var err error
		if measured, err = s.kubelet.containers(ctx, pod.Namespace, pod.Name); err != nil {
			logf("metrics API: %v", err)
		}
		if len(measured) < len(pod.Spec.Containers) {
			return nil
		}
	}
	m := &metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Labels,
			CreationTimestamp: metav1.Now(),
		},
		Timestamp: metav1.Now(),
		Window:    metav1.Duration{Duration: metricsWindow},
	}
	for i, c := range pod.Spec.Containers {
		cpu, mem := resource.MustParse("0"), resource.MustParse("0")
		if u, ok := measured[c.Name]; ok {
			cpu, mem = u[corev1.ResourceCPU], u[corev1.ResourceMemory]
		} else if i == 0 && measured == nil {
			cpu, mem = annotated(pod, cpuAnnotation), annotated(pod, memoryAnnotation)
		}
		m.Containers = append(m.Containers, metricsv1beta1.ContainerMetrics{
			Name:  c.Name,
			Usage: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
		})
	}
	return m
}

func annotated(pod *corev1.Pod, key string) resource.Quantity {
	v, ok := pod.Annotations[key]
	if !ok {
		return resource.MustParse("0")
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		logf("metrics API: pod %s/%s: %s=%q: %v; reporting 0", pod.Namespace, pod.Name, key, v, err)
		return resource.MustParse("0")
	}
	return q
}

func (s *metricsServer) nodeList(ctx context.Context, req *http.Request) (runtime.Object, error) {
	opts, err := selectors(req)
	if err != nil {
		return nil, err
	}
	nodes, err := s.cs.CoreV1().Nodes().List(ctx, opts)
	if err != nil {
		return nil, err
	}
	usage, err := s.usageByNode(ctx)
	if err != nil {
		return nil, err
	}
	out := &metricsv1beta1.NodeMetricsList{}
	for _, n := range nodes.Items {
		out.Items = append(out.Items, nodeMetrics(&n, usage[n.Name]))
	}
	return out, nil
}

func (s *metricsServer) node(ctx context.Context, name string) (runtime.Object, error) {
	n, err := s.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(metricsv1beta1.Resource("nodes"), name)
	}
	if err != nil {
		return nil, err
	}
	usage, err := s.usageByNode(ctx)
	if err != nil {
		return nil, err
	}
	m := nodeMetrics(n, usage[name])
	return &m, nil
}

// usageByNode sums the usage of the Running pods on each node.
func (s *metricsServer) usageByNode(ctx context.Context) (map[string]corev1.ResourceList, error) {
	pods, err := s.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]corev1.ResourceList{}
	for i := range pods.Items {
		p := &pods.Items[i]
		m := s.podMetrics(ctx, p)
		if m == nil || p.Spec.NodeName == "" {
			continue
		}
		sum := out[p.Spec.NodeName]
		if sum == nil {
			sum = corev1.ResourceList{}
			out[p.Spec.NodeName] = sum
		}
		for _, c := range m.Containers {
			for k, v := range c.Usage {
				q := sum[k]
				q.Add(v)
				sum[k] = q
			}
		}
	}
	return out, nil
}

func nodeMetrics(n *corev1.Node, usage corev1.ResourceList) metricsv1beta1.NodeMetrics {
	u := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0"), corev1.ResourceMemory: resource.MustParse("0")}
	for k, v := range usage {
		u[k] = v
	}
	return metricsv1beta1.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.Now()},
		Timestamp:  metav1.Now(),
		Window:     metav1.Duration{Duration: metricsWindow},
		Usage:      u,
	}
}
