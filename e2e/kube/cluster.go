package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Fixed names of the test bed.
const (
	// Issuer is the service-account token issuer (and --api-audiences).
	Issuer = "https://kubernetes.default.svc.cluster.local"
	// AdminUser is the admin's user name, in group system:masters, both as
	// client certificate (Kubeconfig, RESTConfig) and static token.
	AdminUser = "admin"
	// DevUser is a less privileged user, authenticated by static token
	// (UserRESTConfig) in groups system:authenticated and DevGroup, with no
	// RBAC grants: tests bind the roles they need.
	DevUser = "developer"
	// DevGroup is DevUser's own group.
	DevGroup = "developers"
	// ControllerManagerUser is kube-controller-manager's own user (client
	// certificate); its controllers act as the service accounts
	// system:serviceaccount:kube-system:<controller>, as in a kubeadm cluster.
	ControllerManagerUser = "system:kube-controller-manager"
	// ServiceCIDR is the cluster's --service-cluster-ip-range.
	ServiceCIDR = "10.96.0.0/24"
	// serviceIP is the kubernetes Service's ClusterIP, the first in ServiceCIDR.
	serviceIP = "10.96.0.1"
)

// controllers are the kube-controller-manager controllers the bed runs:
// enough for Deployments to create ReplicaSets and Pods, for namespaces and
// service accounts to work like in a real cluster, and for owner references
// to be garbage collected.
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"endpointslice-controller",
	"job-controller",
	"validatingadmissionpolicy-status-controller",
}

// Options configures Start.
type Options struct {
	// BinDir holds the etcd, kube-apiserver and kube-controller-manager
	// binaries (see Require and build.sh).
	BinDir string
	// Dir receives etcd's data, the certificates, the kubeconfig and one log
	// file per component. Empty means a new temporary directory, removed by
	// Stop; a given Dir is left in place for the caller.
	Dir string
	// Logger receives the harness's own messages; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for each component; zero means 2 minutes.
	ReadyTimeout time.Duration
}

// Cluster is a running control plane. Its methods are safe for concurrent use.
type Cluster struct {
	logger      *slog.Logger
	dir         string
	removeDir   bool
	pki         *pki
	url         string
	etcdURL     string
	kubeconfig  string
	kcmConfig   string
	adminToken  string
	userToken   string
	procs       []*process // in start order
	restConfig  *rest.Config
	nodes       []*Node
	stopBinder  context.CancelFunc
	binderDone  chan struct{}
	mu          sync.Mutex
	stopped     bool
	stopOnce    sync.Once
	binderStart sync.Once
}

// Start runs etcd, kube-apiserver and kube-controller-manager on random
// loopback ports and returns when the API server is ready and the
// controller manager has created the default namespace's service account.
// The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.BinDir == "" {
		return nil, errors.New("kube: Options.BinDir is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	c := &Cluster{logger: logger, dir: opts.Dir, adminToken: randomToken(), userToken: randomToken()}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "chaperone-kube-")
		if err != nil {
			return nil, fmt.Errorf("kube dir: %w", err)
		}
		c.dir, c.removeDir = d, true
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	var err error
	c.pki, err = newPKI(filepath.Join(c.dir, "pki"), []staticToken{
		{token: c.adminToken, user: AdminUser, groups: "system:masters"},
		{token: c.userToken, user: DevUser, groups: DevGroup},
	})
	if err != nil {
		return nil, err
	}
	if err := c.startEtcd(ctx, opts.BinDir, timeout); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, opts.BinDir, timeout); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(ctx, opts.BinDir, timeout); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// attempts is how often a component is started on fresh ports when it exits
// before becoming ready (a port taken between freePorts and its bind).
const attempts = 3

func (c *Cluster) startEtcd(ctx context.Context, binDir string, timeout time.Duration) error {
	var err error
	for range attempts {
		var ports []int
		if ports, err = freePorts(2); err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		var p *process
		p, err = startProcess(c.logger, c.dir, "etcd", filepath.Join(binDir, "etcd"), []string{
			"--name=chaperone",
			"--data-dir=" + filepath.Join(c.dir, "etcd"),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=chaperone=" + peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		})
		if err != nil {
			return err
		}
		httpc := &http.Client{Timeout: 2 * time.Second}
		err = waitFor(ctx, p, timeout, func(ctx context.Context) error {
			return probe(ctx, httpc, client+"/health", `"health":"true"`)
		})
		if err == nil {
			c.procs = append(c.procs, p)
			c.etcdURL = client
			return nil
		}
		early := p.exited()
		p.stop()
		if !early || !p.portTaken() || ctx.Err() != nil {
			break
		}
		c.logger.Warn("retrying on new ports", logKeyComponent, "etcd", logKeyErr, err)
	}
	return fmt.Errorf("etcd: %w", err)
}

func (c *Cluster) startAPIServer(ctx context.Context, binDir string, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.ca)
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	var err error
	for range attempts {
		var ports []int
		if ports, err = freePorts(1); err != nil {
			return err
		}
		url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
		var p *process
		p, err = startProcess(c.logger, c.dir, "kube-apiserver", filepath.Join(binDir, "kube-apiserver"), []string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			// No endpoints for the kubernetes Service: its reconciler refuses a
			// loopback address, and nothing in the bed routes to a ClusterIP.
			"--endpoint-reconciler-type=none",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--tls-cert-file=" + c.pki.servingCert,
			"--tls-private-key-file=" + c.pki.servingKey,
			"--client-ca-file=" + c.pki.caFile,
			"--token-auth-file=" + c.pki.tokenFile,
			"--service-account-issuer=" + Issuer,
			"--api-audiences=" + Issuer,
			"--service-account-key-file=" + c.pki.saPub,
			"--service-account-signing-key-file=" + c.pki.saKey,
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--allow-privileged=true",
			"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
			// Kubelets (the Node stand-ins) serve with certificates of the
			// cluster CA and take the API server's client certificate.
			"--kubelet-certificate-authority=" + c.pki.caFile,
			"--kubelet-client-certificate=" + c.pki.kubeletClientCert,
			"--kubelet-client-key=" + c.pki.kubeletClientKey,
			"--kubelet-preferred-address-types=InternalIP",
			"--profiling=false",
			"--v=1",
		})
		if err != nil {
			return err
		}
		err = waitFor(ctx, p, timeout, func(ctx context.Context) error {
			// /readyz is open to unauthenticated clients (system:public-info-viewer).
			return probe(ctx, httpc, url+"/readyz", "ok")
		})
		if err == nil {
			c.procs = append(c.procs, p)
			c.url = url
			return nil
		}
		early := p.exited()
		p.stop()
		if !early || !p.portTaken() || ctx.Err() != nil {
			break
		}
		c.logger.Warn("retrying on a new port", logKeyComponent, "kube-apiserver", logKeyErr, err)
	}
	return fmt.Errorf("kube-apiserver: %w", err)
}

func (c *Cluster) startControllerManager(ctx context.Context, binDir string, timeout time.Duration) error {
	p, err := startProcess(c.logger, c.dir, "kube-controller-manager",
		filepath.Join(binDir, "kube-controller-manager"), []string{
			"--kubeconfig=" + c.kcmConfig,
			"--authentication-kubeconfig=" + c.kcmConfig,
			"--authorization-kubeconfig=" + c.kcmConfig,
			"--bind-address=127.0.0.1",
			"--secure-port=0",
			"--leader-elect=false",
			"--controllers=" + strings.Join(controllers, ","),
			"--service-account-private-key-file=" + c.pki.saKey,
			"--root-ca-file=" + c.pki.caFile,
			"--use-service-account-credentials=true",
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--v=1",
		})
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// The default service account appears once the controller manager runs
	// its controllers: only then can pods be created in "default".
	return waitFor(ctx, p, timeout, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errNotReady
		}
		return err
	})
}

// probe GETs url and wants a 200 response whose body contains want.
func probe(ctx context.Context, httpc *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("%w: %s: %s", errNotReady, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// writeKubeconfig writes the admin kubeconfig (client certificate, embedded)
// and builds the admin REST config from it, and the controller manager's
// kubeconfig with its own certificate.
func (c *Cluster) writeKubeconfig() error {
	const name = "chaperone-test"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.url, CertificateAuthorityData: c.pki.caPEM}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.pki.adminPEM,
		ClientKeyData:         c.pki.adminKey,
	}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: AdminUser, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = name
	path := filepath.Join(c.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewNonInteractiveClientConfig(*cfg, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	c.kubeconfig, c.restConfig = path, rc

	kcm := cfg.DeepCopy()
	delete(kcm.AuthInfos, AdminUser)
	kcm.AuthInfos[ControllerManagerUser] = &clientcmdapi.AuthInfo{ClientCertificateData: c.pki.kcmPEM, ClientKeyData: c.pki.kcmKey}
	kcm.Contexts[name].AuthInfo = ControllerManagerUser
	c.kcmConfig = filepath.Join(c.dir, "controller-manager.kubeconfig")
	if err := clientcmd.WriteToFile(*kcm, c.kcmConfig); err != nil {
		return fmt.Errorf("write controller manager kubeconfig: %w", err)
	}
	return nil
}

// Kubeconfig returns the path of a kubeconfig file for the admin user
// (client certificate in system:masters), usable with kubectl --kubeconfig.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a new client-go config for the admin user.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// UserRESTConfig returns a new client-go config for DevUser, authenticated
// by bearer token and holding no RBAC grants until a test binds some.
func (c *Cluster) UserRESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.url,
		BearerToken:     c.userToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA()},
	}
}

// AdminToken returns the admin's static bearer token, for clients that
// cannot present the client certificate.
func (c *Cluster) AdminToken() string { return c.adminToken }

// CA returns the PEM certificate of the cluster CA, which signed the API
// server's serving certificate and the admin client certificate.
func (c *Cluster) CA() []byte { return append([]byte(nil), c.pki.caPEM...) }

// URL returns the API server's base URL, https://127.0.0.1:PORT.
func (c *Cluster) URL() string { return c.url }

// Dir returns the cluster's directory: etcd data, pki/, kubeconfig and one
// <component>.log per process.
func (c *Cluster) Dir() string { return c.dir }

// Logs returns the log file path of each component that was started, by
// component name (etcd, kube-apiserver, kube-controller-manager).
func (c *Cluster) Logs() map[string]string {
	m := make(map[string]string, len(c.procs))
	for _, p := range c.procs {
		m[p.name] = p.log
	}
	return m
}

// Stop ends the binder and all components (controller manager, API server,
// etcd, in that order) and removes Dir if Start created it. It is safe to
// call more than once.
func (c *Cluster) Stop() error {
	var err error
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		stopBinder, binderDone := c.stopBinder, c.binderDone
		c.mu.Unlock()
		if stopBinder != nil {
			stopBinder()
			<-binderDone
		}
		c.stopNodes()
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop()
		}
		if c.removeDir {
			if rerr := os.RemoveAll(c.dir); rerr != nil {
				err = fmt.Errorf("remove %s: %w", c.dir, rerr)
			}
		}
	})
	return err
}
