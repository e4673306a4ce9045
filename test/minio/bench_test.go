package miniotest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/sse"

	"github.com/keep-kms/keep/test/testnode"
)

var (
	benchClients = flag.Int("minio.clients", 16, "BenchmarkMinIOPut: concurrent clients")
	benchSize    = flag.Int("minio.size", 4<<10, "BenchmarkMinIOPut: object size in bytes")
	benchRound   = flag.Duration("minio.round", 5*time.Second, "BenchmarkMinIOPut: duration of one round")
	benchRounds  = flag.Int("minio.rounds", 7, "BenchmarkMinIOPut: rounds per configuration")
	benchNames   = flag.Int("minio.names", 100, "BenchmarkMinIOPut: object names per client (PUTs overwrite them)")
	benchProfile = flag.String("minio.keepprofile", "", "BenchmarkMinIOPut: write Keep's CPU profile of the measured rounds to this file")
)

// BenchmarkMinIOPut measures small-object PUTs per second through MinIO
// with Keep as its KMS (MinIO KMS API, one node) against the same MinIO
// with a static key (MINIO_KMS_SECRET_KEY) in the same run. Both servers
// run side by side, each on a fresh drive, with a bucket encrypted with
// SSE-S3 by default; every PUT of the Keep server asks Keep for a data key.
// Rounds of -minio.round alternate between the two (which one goes first
// alternates too); the medians and their ratio (goal: ≥ 0.9) are reported.
// It ignores b.N: run it with -benchtime=1x.
//
//	go test ./test/minio -run '^$' -bench MinIOPut -benchtime=1x [-minio.rounds 7 -minio.round 10s]
func BenchmarkMinIOPut(b *testing.B) {
	needMinIO(b)
	ca := newCA(b)
	keep := startKeep(b, ca, keepOptions{nodes: 1})
	const enclave, defaultKey = "minio", "minio-default-key"
	apiKey := keep.addEnclaveAdmin(b, enclave)
	withKeep := newMinIO(b, "keep", ca,
		"MINIO_KMS_SERVER="+keep.server(),
		"MINIO_KMS_API_KEY="+apiKey,
		"MINIO_KMS_ENCLAVE="+enclave,
		"MINIO_KMS_SSE_KEY="+defaultKey,
	)
	static := newMinIO(b, "static", nil,
		"MINIO_KMS_SECRET_KEY="+defaultKey+":"+base64.StdEncoding.EncodeToString(randomBytes(b, 32)),
	)
	servers := []*minioServer{withKeep, static}
	clients := make([]*minio.Client, len(servers))
	for i, m := range servers {
		m.mustStart()
		clients[i] = m.client(0)
		ctx := context.Background()
		if err := clients[i].MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := clients[i].SetBucketEncryption(ctx, bucket, sse.NewConfigurationSSES3()); err != nil {
			b.Fatal(err)
		}
	}
	data := randomBytes(b, *benchSize)

	// Check the setup once: objects come back encrypted with SSE-S3.
	for i, c := range clients {
		name := "check"
		if _, err := c.PutObject(context.Background(), bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			b.Fatalf("%s: PUT: %v", servers[i].name, err)
		}
		info, err := c.StatObject(context.Background(), bucket, name, minio.StatObjectOptions{})
		if err != nil {
			b.Fatalf("%s: HEAD: %v", servers[i].name, err)
		}
		if got := info.Metadata.Get(headerSSE); got != sseS3 {
			b.Fatalf("%s: %s = %q, want %s", servers[i].name, headerSSE, got, sseS3)
		}
	}

	// A short warm-up of each (connections, caches), not counted.
	for i := range servers {
		if _, _, err := putRound(clients[i], data, *benchClients, time.Second, *benchNames); err != nil {
			b.Fatalf("%s: warm-up: %v", servers[i].name, err)
		}
	}

	rates := make([][]float64, len(servers))
	var keepCPU time.Duration // Keep's CPU time during the Keep rounds
	minioCPU := make([]time.Duration, len(servers))
	puts := make([]float64, len(servers))
	if *benchProfile != "" {
		stop := startKeepProfile(b, keep)
		defer stop(*benchProfile)
	}
	b.ResetTimer()
	for r := range *benchRounds {
		for j := range servers {
			i := (j + r) % len(servers) // alternate who goes first
			keep0, minio0 := processCPU(keep.nodes[0].PID()), processCPU(servers[i].PID())
			rate, n, err := putRound(clients[i], data, *benchClients, *benchRound, *benchNames)
			if err != nil {
				b.Fatalf("%s: round %d: %v", servers[i].name, r+1, err)
			}
			if i == 0 {
				keepCPU += processCPU(keep.nodes[0].PID()) - keep0
			}
			minioCPU[i] += processCPU(servers[i].PID()) - minio0
			puts[i] += float64(n)
			rates[i] = append(rates[i], rate)
		}
		b.Logf("round %d: keep %.0f PUT/s, static %.0f PUT/s", r+1, rates[0][r], rates[1][r])
	}
	b.StopTimer()

	keepRate, staticRate := median(rates[0]), median(rates[1])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(keepRate, "keep-PUT/s")
	b.ReportMetric(staticRate, "static-PUT/s")
	b.ReportMetric(keepRate/staticRate, "ratio")
	// The median of the ratios of the two rounds run back to back: less
	// sensitive to load that drifts over the run.
	pairs := make([]float64, len(rates[0]))
	for r := range pairs {
		pairs[r] = rates[0][r] / rates[1][r]
	}
	b.ReportMetric(median(pairs), "paired-ratio")
	// CPU time per PUT (where /proc can be read): of Keep, and of each MinIO.
	if keepCPU > 0 {
		b.ReportMetric(float64(keepCPU.Microseconds())/puts[0], "keep-CPU-µs/PUT")
	}
	if minioCPU[0] > 0 && minioCPU[1] > 0 {
		b.ReportMetric(float64(minioCPU[0].Microseconds())/puts[0], "minio-keep-CPU-µs/PUT")
		b.ReportMetric(float64(minioCPU[1].Microseconds())/puts[1], "minio-static-CPU-µs/PUT")
	}
	b.Logf("%d clients, %d-byte objects, %d rounds of %v each: median %.0f PUT/s with Keep, %.0f PUT/s with a static key: ratio %.3f (goal ≥ 0.9), median of the round pairs' ratios %.3f",
		*benchClients, *benchSize, *benchRounds, *benchRound, keepRate, staticRate, keepRate/staticRate, median(pairs))
}

// putRound has clients goroutines PUT data for d, overwriting names
// objects each, and returns the completed PUTs per second and their number.
func putRound(c *minio.Client, data []byte, clients int, d time.Duration, names int) (float64, int64, error) {
	var (
		n        atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(d)
	for g := range clients {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				name := fmt.Sprintf("bench/c%d/o%d", g, i%names)
				_, err := c.PutObject(ctx, bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{DisableMultipart: true})
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("PUT %s: %w", name, err) })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return float64(n.Load()) / time.Since(start).Seconds(), n.Load(), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// processCPU is the CPU time (user and system) process pid has used so
// far, from /proc; 0 where that cannot be read.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses:
	// utime and stime are fields 14 and 15 of the line, in clock ticks.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// startKeepProfile starts CPU profiling on Keep's first node
// (/v1/debug/pprof, as the root identity) and returns a function that
// stops it and writes the CPU profile to a file.
func startKeepProfile(b *testing.B, keep *keepCluster) func(file string) {
	hc := testnode.HTTPClient(b, keep.nodes[0].Root, time.Minute)
	url := keep.nodes[0].Endpoint() + "/v1/debug/pprof"
	resp, err := hc.Post(url+"?cpu=true", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("POST /v1/debug/pprof: %s", resp.Status)
	}
	return func(file string) {
		req, _ := http.NewRequest(http.MethodDelete, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("DELETE /v1/debug/pprof: %s", resp.Status)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			b.Fatal(err)
		}
		var r io.Reader = bytes.NewReader(body)
		if len(body) > 2 && body[0] == 0x1f && body[1] == 0x8b {
			if r, err = gzip.NewReader(r); err != nil {
				b.Fatal(err)
			}
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err != nil {
				b.Fatalf("no cpu.pprof in Keep's profile archive: %v", err)
			}
			if h.Name == "cpu.pprof" {
				data, err := io.ReadAll(tr)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(file, data, 0o644); err != nil {
					b.Fatal(err)
				}
				b.Logf("Keep's CPU profile: go tool pprof %s", file)
				return
			}
		}
	}
}
