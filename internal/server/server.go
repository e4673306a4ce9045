// Package server runs a Keep node: it reads the configuration, unseals
// with the HSM, starts the raft node and serves the APIs on one TLS port.
package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"aead.dev/mtls"
	"github.com/keep-kms/keep/internal/api/kes"
	"github.com/keep-kms/keep/internal/api/minkms"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/gctune"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/logging"
	"github.com/keep-kms/keep/internal/metrics"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/internal/usage"
)

// DefaultPort is the port Keep listens on unless told otherwise.
const DefaultPort = 7373

// Options are the command-line settings of a node.
type Options struct {
	Dir        string // data directory; required unless Dev
	Address    string // listen address, default "0.0.0.0:7373" ("127.0.0.1:7373" with Dev)
	Host       string // advertised host:port of this node; "" = server picks
	ConfigFile string // YAML config path; "" = none
	// Seed is the host:port of the node that founds the cluster. Any other
	// node reports itself not ready (GET /v1/health/ready, KES /v1/ready)
	// while it is a fresh one-node cluster that waits to be added: a
	// deployment that adds its nodes by itself (the Helm chart) keeps
	// clients off it until then. "" = every node is ready once it serves.
	Seed   string
	Dev    bool      // in-memory node with a random HSM key
	Stdout io.Writer // banner goes here
	// Getenv reads the environment, where the HSMs are configured unless
	// the config file lists them (see HSMConfig); nil means os.Getenv.
	Getenv func(string) string
}

// readTimeout bounds the time a client may take to send a request, body
// included: a 4 MiB batch at 200 KiB/s. maxStreams bounds the concurrent
// HTTP/2 streams (requests) of one connection; a client that needs more
// opens another connection, as Go's client does on its own.
const (
	readTimeout = 20 * time.Second
	maxStreams  = 250
)

// gcTuneEvery is how often a node sets the garbage collector's target
// from its live heap (gctune.Default); GOGC in the environment overrides
// the policy.
const gcTuneEvery = time.Second

// Run starts a node and serves until ctx is cancelled.
func Run(ctx context.Context, opts Options) error {
	if os.Getenv("GOGC") == "" {
		go gctune.Run(ctx, gctune.Default, gcTuneEvery)
	}
	opts, err := prepare(opts)
	if err != nil {
		return err
	}
	var conf *Config
	if opts.ConfigFile != "" {
		if conf, err = LoadConfig(opts.ConfigFile); err != nil {
			return err
		}
	}
	keyring, err := openKeyring(opts, conf)
	if err != nil {
		return err
	}
	defer keyring.Close()
	if !opts.Dev {
		if err := prepareDir(opts.Dir); err != nil {
			return err
		}
	}
	// The node's HSM: the first of its HSMs that unseals the root key its
	// data directory holds. It derives the node's keys.
	h, err := cluster.OpenKeyring(ctx, opts.Dir, keyring)
	if err != nil {
		return err
	}
	auditLog := conf.openAudit(opts.Stdout)
	defer auditLog.Close()
	nodeMetrics := metrics.New()
	auditLog.Observe(nodeMetrics.CountCommands)
	nodeMetrics.SetAuditFailing(auditLog.Failing)

	// The node's own root: the HSM-derived root API key, or the config
	// file's admin.identity. The cluster-wide setting admin.identity
	// replaces it on every node (service.Service.isRoot).
	rootKey, err := hsm.RootAPIKey(ctx, h)
	if err != nil {
		return fmt.Errorf("failed to derive root API key: %w", err)
	}
	admin, apiKey := rootKey.Identity().String(), rootKey.String()
	if conf != nil && conf.Admin.Identity != "" {
		admin, apiKey = conf.Admin.Identity, ""
	}
	// The root API key is shown once, when the cluster is created: logs
	// of every later start (journald, container logs) must not hold it.
	// keep identity HSM-KEY computes it again.
	if !opts.Dev && !freshDir(opts.Dir) {
		apiKey = ""
	}

	settings := newRuntimeSettings(conf, auditLog, opts.Host, admin)
	logger, logs := logging.New(os.Stderr, settings.level)
	slog.SetDefault(logger)
	if err := auditLog.Ready(); err != nil {
		slog.Error("requests are refused until the audit log can be written", "err", err)
	}
	nodeKey, err := h.PrivateKey(ctx, hsm.NodeKeySeed)
	if err != nil {
		return fmt.Errorf("failed to derive node key: %w", err)
	}
	listenIP, _, _ := net.SplitHostPort(opts.Address)
	trans, err := cluster.NewTransport(opts.Host, nodeKey, listenIP)
	if err != nil {
		return err
	}

	hostName, _, _ := net.SplitHostPort(opts.Host)
	certs, clientCAs, err := loadCertificates(conf, []string{hostName, listenIP, "localhost", "127.0.0.1", "::1"})
	if err != nil {
		return err
	}
	var devCert string
	if opts.Dev && (conf == nil || len(conf.TLS.Certs) == 0) {
		if devCert, err = writeDevCertificate(certs, opts.Address); err != nil {
			return fmt.Errorf("failed to write the dev certificate: %w", err)
		}
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go certs.watch(watchCtx, certCheckInterval)
	nodeMetrics.SetCertificates(certs.certificates)
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", opts.Address, err)
	}

	// The listener serves from the start, so that peers reach raft while
	// this node catches up; the API answers "not ready" until the node is.
	var handler atomic.Pointer[http.Handler]
	// serving is whether clients may connect: not while the node starts or
	// stops (see tlsConfig); peers always may.
	var serving atomic.Bool
	var clients clientConns
	starting := minkms.Unavailable()
	handler.Store(&starting)
	srv := &http.Server{
		Handler:           observe(nodeMetrics, answerPanics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))),
		ReadHeaderTimeout: 10 * time.Second,
		// Every request, body included, must arrive within ReadTimeout: a
		// client that trickles its body is cut off. Handlers that stream
		// replies for long clear it, and PUT /v1/db extends it.
		ReadTimeout:    readTimeout,
		HTTP2:          &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ConnContext:    identity.ConnContext,       // caches the client's identity per connection
		ConnState:      clients.track,              // see drain
		ErrorLog:       log.New(io.Discard, "", 0), // TLS probes and resets are not worth a log line each
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			cluster.ALPN:        func(_ *http.Server, c *tls.Conn, _ http.Handler) { trans.ServeConn(c) },
			cluster.ForwardALPN: func(_ *http.Server, c *tls.Conn, _ http.Handler) { trans.ServeConn(c) },
		},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	serveErr := make(chan error, 1)
	guard := &anonymousGuard{max: maxAnonymousConns, lifetime: anonymousConnLifetime}
	go func() {
		serveErr <- srv.Serve(tls.NewListener(guard.listener(ln), tlsConfig(certs, clientCAs, trans, guard, serving.Load)))
	}()
	defer shutdown(srv)

	restart := make(chan struct{}, 1)
	st := state.New(keyring)
	st.OnSettings(settings.apply)
	if err := trustHSMs(ctx, trans, keyring); err != nil {
		return err
	}
	node, err := cluster.Open(ctx, cluster.Config{
		Dir:          opts.Dir,
		Host:         opts.Host,
		Keyring:      keyring,
		HSM:          h,
		State:        st,
		Transport:    trans,
		Logger:       slog.Default(),
		Restart:      restartFunc(restart, opts.Dev),
		MaxStaleness: settings.maxStaleness,
		Snapshots:    conf.snapshots(),
	})
	if err != nil {
		return err
	}
	defer node.Close()
	// Deferred calls run last first: before the node closes, clients are
	// sent away and the requests they sent are answered (see drain).
	defer clients.drain(srv, &serving)
	nodeMetrics.SetRaft(node.RaftStats)
	nodeMetrics.SetMaxStaleness(settings.maxStaleness)

	// Peers may call this node while it catches up: a node that answers
	// them only once it is current looks down to its cluster meanwhile.
	catchingUp := http.NewServeMux()
	catchingUp.Handle("/v1/rpc/", node.RPCHandler())
	catchingUp.Handle("/", starting)
	var rpcOnly http.Handler = catchingUp
	handler.Store(&rpcOnly)
	if err := node.CatchUp(ctx); err != nil {
		return err
	}
	settings.caughtUp()

	// A node that is not the seed waits, not ready, to be added.
	nodeHealth := &health{st: st, node: node, awaitsJoin: opts.Seed != "" && opts.Seed != opts.Host}
	svc := service.New(st, node, admin)
	svc.UseHSMs(keyring)
	if admin == rootKey.Identity().String() {
		svc.TrustHSMRoots()
	}
	api := minkms.New(minkms.Config{
		Service: svc,
		Node:    nodeHealth,
		Host:    opts.Host,
		Audit:   auditLog,
		Logs:    logs,
		NodeConfig: nodeView{
			Address: opts.Address, Host: opts.Host, Dir: opts.Dir, Dev: opts.Dev,
			HSM: h.Name(), Admin: admin, ConfigFile: opts.ConfigFile, Config: conf,
		},
		Effective: settings.Effective,
		Metrics:   nodeMetrics.Encode,
		Limits:    settings.limits,
	})
	mux := http.NewServeMux()
	mux.Handle("/v1/rpc/", node.RPCHandler())
	api.Register(mux)
	kesAPI := kes.New(kes.Config{
		Service: svc,
		Node:    nodeHealth,
		Host:    opts.Host,
		Enclave: conf.kesEnclave(),
		Audit:   auditLog,
		Logs:    logs,
		Limits:  settings.limits,
	})
	kesAPI.Register(mux) // the same mux: KES and MinIO KMS paths do not collide; /version serves both
	srv.RegisterOnShutdown(kesAPI.Close)
	var ready http.Handler = mux
	handler.Store(&ready)
	serving.Store(true)
	go svc.RunLifecycle(ctx, node.IsLeader, lifecycleTick, func(ev service.LifecycleEvent) {
		recordLifecycle(auditLog, opts.Host, ev)
	})

	// Every node reports the use of its key versions to the cluster.
	reportCtx, stopReports := context.WithCancel(ctx)
	defer stopReports()
	go usage.NewReporter(st.UsageCounters, svc.ReportUsage).Run(reportCtx, settings.usageReportInterval)
	nodeMetrics.SetKeyUsage(st.KeyUsage)

	(&banner{
		HSM:       h.Name(),
		ClusterID: st.ClusterID(),
		Status:    node.LocalStatus(),
		Endpoint:  "https://" + opts.Host,
		APIKey:    apiKey,
		HSMRoot:   admin == rootKey.Identity().String(),
		SoftHSM:   isSoft(h),
		Admin:     cmp.Or(st.Admin(), admin),
		Cluster:   st.Admin() != "",
		Dev:       opts.Dev,
		DevCert:   devCert,
	}).write(opts.Stdout)

	select {
	case <-ctx.Done():
		return nil
	case <-restart:
		slog.Info("restarting")
		return ErrRestart
	case err := <-serveErr:
		return fmt.Errorf("server stopped: %w", err)
	}
}

// trustHSMs makes the transport accept the nodes of every HSM of this node
// and of every HSM that seals the cluster's root key: during a move from
// one HSM to another, nodes on either present different node keys.
func trustHSMs(ctx context.Context, trans *cluster.Transport, keyring *hsm.Keyring) error {
	own := map[string]bool{}
	for _, h := range keyring.HSMs() {
		key, err := h.PrivateKey(ctx, hsm.NodeKeySeed)
		if err != nil {
			return fmt.Errorf("HSM %s: failed to derive node key: %w", h.Name(), err)
		}
		own[key.Identity().String()] = true
	}
	trans.Trust(func(id mtls.Identity) bool {
		s := id.String()
		return own[s] || keyring.IsNode(s)
	})
	return nil
}

// isSoft reports whether h is a soft HSM key.
func isSoft(h hsm.HSM) bool {
	_, ok := h.(*hsm.Soft)
	return ok
}

// prepare checks the options and fills in defaults.
func prepare(opts Options) (Options, error) {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Address == "" {
		opts.Address = net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort))
		if opts.Dev {
			opts.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultPort))
		}
	}
	listenIP, port, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return opts, fmt.Errorf("invalid --address %q: use IP:PORT, e.g. 0.0.0.0:7373", opts.Address)
	}
	if opts.Host == "" {
		opts.Host = net.JoinHostPort(advertisedIP(listenIP), port)
	} else if _, _, err := net.SplitHostPort(opts.Host); err != nil {
		opts.Host = net.JoinHostPort(opts.Host, strconv.Itoa(DefaultPort))
	}
	if opts.Seed != "" {
		if _, _, err := net.SplitHostPort(opts.Seed); err != nil {
			opts.Seed = net.JoinHostPort(opts.Seed, strconv.Itoa(DefaultPort))
		}
	}

	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Dev {
		opts.Dir = ""
		return opts, nil
	}
	if opts.Dir == "" {
		return opts, errors.New("no data directory: run keep server DIR, or keep server --dev for a throw-away node")
	}
	return opts, nil
}

// openKeyring opens the node's HSMs: a random soft HSM for a dev node, else
// those its config file or environment names.
func openKeyring(opts Options, conf *Config) (*hsm.Keyring, error) {
	if !opts.Dev {
		return openHSMs(conf, opts.Getenv)
	}
	key, err := hsm.GenerateSoftKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		return nil, err
	}
	return hsm.NewKeyring(h), nil
}

// freshDir reports whether dir holds no cluster yet: this start creates
// one.
func freshDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, cluster.DBFile))
	return errors.Is(err, fs.ErrNotExist)
}

// prepareDir creates the data directory if needed and checks that this
// process can write to it.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot use data directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".keep-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot write to data directory %s: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// advertisedIP picks the address a node announces when --host is not set:
// the listen IP if it is a specific one, else the first non-loopback unicast
// address, else 127.0.0.1.
func advertisedIP(listenIP string) string {
	if ip := net.ParseIP(listenIP); ip != nil && !ip.IsUnspecified() {
		return listenIP
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
}

// health tells the API what this node can serve.
type health struct {
	st   *state.State
	node *cluster.Node
	// awaitsJoin: this node is not the seed (Options.Seed), so it is not
	// ready while it may still be added to the seed's cluster.
	awaitsJoin bool
}

func (h *health) Ready() bool {
	return h.st.Initialized() && !(h.awaitsJoin && h.node.Joinable())
}
func (h *health) Writable() bool { return h.node.Writable() }

func (h *health) Status() cluster.NodeStatus { return h.node.LocalStatus() }
