package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of everything the control plane needs to speak TLS
// and to sign ServiceAccount tokens. It is generated once per .testenv
// directory and reused, so kubeconfigs stay valid across restarts.
type pki struct {
	dir                   string
	caCert, caKey         string
	serverCert, serverKey string
	adminCert, adminKey   string
	saKey, saPub          string
}

func newPKI(dir string) *pki {
	p := func(n string) string { return filepath.Join(dir, n) }
	return &pki{
		dir:        dir,
		caCert:     p("ca.crt"),
		caKey:      p("ca.key"),
		serverCert: p("apiserver.crt"),
		serverKey:  p("apiserver.key"),
		adminCert:  p("admin.crt"),
		adminKey:   p("admin.key"),
		saKey:      p("sa.key"),
		saPub:      p("sa.pub"),
	}
}

// serverIPs are the addresses the API server is reached at: loopback, the
// real node's address and the `kubernetes` Service's ClusterIP.
func serverIPs() []net.IP {
	return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(nodeIP), net.ParseIP("10.96.0.1")}
}

// coversServerIPs says whether the server certificate at path names every
// address of serverIPs (an older set is issued again).
func coversServerIPs(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	for _, ip := range serverIPs() {
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func (p *pki) ensure() error {
	if fileExists(p.caCert) && fileExists(p.serverCert) && fileExists(p.adminCert) && fileExists(p.saKey) && fileExists(p.saPub) && coversServerIPs(p.serverCert) {
		return nil
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "nur-testenv-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)

	issue := func(tmpl *x509.Certificate, certPath, keyPath string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore = now
		tmpl.NotAfter = notAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		return writePEM(keyPath, "EC PRIVATE KEY", kder, 0o600)
	}

	if err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: serverIPs(),
	}, p.serverCert, p.serverKey); err != nil {
		return err
	}
	if err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "nur-testenv-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.adminCert, p.adminKey); err != nil {
		return err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writePEM(p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey), 0o600); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(p.saPub, "PUBLIC KEY", pubDER, 0o644); err != nil {
		return err
	}
	caKDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	if err := writePEM(p.caKey, "EC PRIVATE KEY", caKDER, 0o600); err != nil {
		return err
	}
	// The CA certificate is written last: its presence marks a complete set.
	return writePEM(p.caCert, "CERTIFICATE", caDER, 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if b == nil {
		return fmt.Errorf("encode %s", path)
	}
	return os.WriteFile(path, b, mode)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
