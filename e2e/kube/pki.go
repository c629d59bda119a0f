package kube

import (
	"crypto"
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

// pki holds the files and material of one cluster's certificates and keys.
type pki struct {
	caPEM    []byte
	ca       *x509.Certificate
	caKey    crypto.Signer
	adminPEM []byte // admin client certificate, CN=admin O=system:masters
	adminKey []byte // its PEM private key
	kcmPEM   []byte // kube-controller-manager's client certificate
	kcmKey   []byte // its PEM private key

	caFile, servingCert, servingKey string
	saPub, saKey                    string
	tokenFile                       string
	// kubeletClientCert and kubeletClientKey are the API server's client
	// certificate towards kubelets (see Node).
	kubeletClientCert, kubeletClientKey string
}

// File names inside the pki directory.
const (
	caCrtName      = "ca.crt"
	servingCrtName = "apiserver.crt"
	servingKeyName = "apiserver.key"
	saPubName      = "sa.pub"
	saKeyName      = "sa.key"
	tokensName     = "tokens.csv"

	kubeletClientCrtName = "apiserver-kubelet-client.crt"
	kubeletClientKeyName = "apiserver-kubelet-client.key"
)

// newPKI writes a CA, the API server's serving certificate, the
// service-account signing key pair and the static token file into dir.
func newPKI(dir string, tokens []staticToken) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	p := &pki{
		caFile:      filepath.Join(dir, caCrtName),
		servingCert: filepath.Join(dir, servingCrtName),
		servingKey:  filepath.Join(dir, servingKeyName),
		saPub:       filepath.Join(dir, saPubName),
		saKey:       filepath.Join(dir, saKeyName),
		tokenFile:   filepath.Join(dir, tokensName),

		kubeletClientCert: filepath.Join(dir, kubeletClientCrtName),
		kubeletClientKey:  filepath.Join(dir, kubeletClientKeyName),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "chaperone-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("ca cert: %w", err)
	}
	p.ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse ca cert: %w", err)
	}
	p.caKey = caKey
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(p.caFile, p.caPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write ca: %w", err)
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP(serviceIP)},
	}
	certPEM, keyPEM, err := p.issue(serving)
	if err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}
	if err := writeFiles(map[string][]byte{p.servingCert: certPEM, p.servingKey: keyPEM}); err != nil {
		return nil, err
	}

	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: AdminUser, Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	p.adminPEM, p.adminKey, err = p.issue(admin)
	if err != nil {
		return nil, fmt.Errorf("admin cert: %w", err)
	}
	// The controller manager has its own identity, as in a real cluster,
	// so that what its controllers do is told apart from what people do
	// (the webhook keeps a person's requested-by stamp on the pods a
	// ReplicaSet controller creates).
	kcm := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ControllerManagerUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	p.kcmPEM, p.kcmKey, err = p.issue(kcm)
	if err != nil {
		return nil, fmt.Errorf("controller manager cert: %w", err)
	}

	// The API server's identity towards kubelets, as kubeadm names it.
	kubeletClient := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	kcPEM, kcKey, err := p.issue(kubeletClient)
	if err != nil {
		return nil, fmt.Errorf("kubelet client cert: %w", err)
	}
	if err := writeFiles(map[string][]byte{p.kubeletClientCert: kcPEM, p.kubeletClientKey: kcKey}); err != nil {
		return nil, err
	}

	// The service-account signing key is RSA: the JWKS then serves RS256,
	// the algorithm every OIDC consumer supports.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	saKeyDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account key: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := writeFiles(map[string][]byte{
		p.saKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saKeyDER}),
		p.saPub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}); err != nil {
		return nil, err
	}

	var csv []byte
	for _, t := range tokens {
		// token,user,uid,"group1,group2"
		csv = fmt.Appendf(csv, "%s,%s,%s,%q\n", t.token, t.user, t.user, t.groups)
	}
	if err := os.WriteFile(p.tokenFile, csv, 0o600); err != nil {
		return nil, fmt.Errorf("write token file: %w", err)
	}
	return p, nil
}

// issue signs tmpl with the CA for a fresh P-256 key and returns both as PEM.
func (p *pki) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writeFiles(files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Base(name), err)
		}
	}
	return nil
}

// staticToken is one line of the API server's --token-auth-file.
type staticToken struct {
	token, user, groups string
}

// randomToken returns a 32-hex-digit bearer token.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
