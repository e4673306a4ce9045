package kes

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/keep-kms/keep/internal/buildinfo"
)

// The status routes (/v1/ready, /v1/status, /v1/api, /v1/metrics) show the
// state of the server, not of keys: SysAdmins and every identity of the KES
// enclave may call them (service.EnclaveMember, declared in routes.go).
// MinIO calls /v1/status with the identity it uses for its keys.

// ready serves GET /v1/ready: 200 while this node can serve reads and
// crypto; 502 before its state is initialized, 504 while it is cut off
// from the leader for longer than it may serve reads (cluster.max_staleness).
func (a *API) ready(r *request) (any, error) {
	if !a.node.Ready() {
		return nil, errUnavailable
	}
	if err := a.svc.CheckReads(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	return nil, nil
}

// statusReply is the reply of /v1/status (spec §2.5). Keep's key store is
// itself, so keystore_unreachable is never sent; keystore_latency is the
// time to reach this node's state, in nanoseconds (the client reads a Go
// time.Duration; KES sends milliseconds).
type statusReply struct {
	Version         string `json:"version"`
	OS              string `json:"os"`
	Arch            string `json:"arch"`
	UpTime          int64  `json:"uptime"` // seconds
	CPUs            int    `json:"num_cpu"`
	UsableCPUs      int    `json:"num_cpu_used"`
	HeapAlloc       uint64 `json:"mem_heap_used"`
	StackAlloc      uint64 `json:"mem_stack_used"`
	KeystoreLatency int64  `json:"keystore_latency,omitempty"`
}

// status serves GET /v1/status.
func (a *API) status(r *request) (any, error) {
	start := time.Now()
	a.node.Ready() // takes the state's read lock, as every read does
	latency := max(time.Since(start), 1)
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	return statusReply{
		Version:         buildinfo.Version,
		OS:              runtime.GOOS,
		Arch:            runtime.GOARCH,
		UpTime:          int64(time.Since(a.started).Seconds()),
		CPUs:            runtime.NumCPU(),
		UsableCPUs:      runtime.GOMAXPROCS(0),
		HeapAlloc:       mem.HeapAlloc,
		StackAlloc:      mem.StackSys,
		KeystoreLatency: int64(latency),
	}, nil
}

// apiInfo is one entry of the /v1/api reply.
type apiInfo struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	MaxBody int64  `json:"max_body"`
	Timeout int64  `json:"timeout"` // seconds
}

// apis serves GET /v1/api: the route table.
func (a *API) apis(r *request) (any, error) {
	return apiList(), nil
}

func apiList() []apiInfo {
	list := make([]apiInfo, 0, len(routes))
	for _, rt := range routes {
		list = append(list, apiInfo{Method: rt.method, Path: rt.path, MaxBody: rt.maxBody, Timeout: int64(rt.timeout / time.Second)})
	}
	slices.SortFunc(list, func(x, y apiInfo) int { return strings.Compare(x.Path, y.Path) })
	return list
}

// metricsReply serves GET /v1/metrics: the kes_* metrics, in the
// exposition format the client asks for by Accept.
func (a *API) metricsReply(r *request) (any, error) {
	contentType, body, err := a.metrics.render(r.Header)
	if err != nil {
		return nil, err
	}
	return raw{contentType: contentType, body: body}, nil
}
