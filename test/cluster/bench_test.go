package cluster_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// BenchmarkKeyCreate measures writes on a 3-node cluster on loopback: key
// creations per second with 1 and with 64 concurrent clients, and their
// latency percentiles. Clients know every node, as MinIO does, so most
// writes reach a follower and are forwarded to the leader ("all"); for
// comparison, clients that send every write to the leader ("leader").
//
//	go test ./test/cluster -run '^$' -bench KeyCreate -benchtime 1x
//
// KEEP_BENCH_SECONDS sets the load time per case (default 5).
func BenchmarkKeyCreate(b *testing.B) {
	hsm := testnode.NewHSMKey(b)
	nodes := make([]*testnode.Node, 3)
	endpoints := make([]string, 3)
	for i := range nodes {
		nodes[i] = testnode.Start(b, testnode.Options{HSMKey: hsm})
		endpoints[i] = nodes[i].Addr
	}
	admin := nodes[0].RootClient(b)
	for _, n := range nodes[1:] {
		if err := admin.AddNode(context.Background(), &kms.AddClusterNodeRequest{Host: n.Addr}); err != nil {
			b.Fatalf("adding %s: %v", n.Addr, err)
		}
	}
	clients := map[string]*kms.Client{
		"all":    testnode.Client(b, nodes[0].Root, endpoints...),
		"leader": testnode.Client(b, nodes[0].Root, nodes[0].Addr), // node 0 bootstrapped the cluster and leads it
	}

	load := 5 * time.Second
	if s := os.Getenv("KEEP_BENCH_SECONDS"); s != "" {
		if d, err := time.ParseDuration(s + "s"); err == nil {
			load = d
		}
	}
	for _, endpoints := range []string{"all", "leader"} {
		for _, workers := range []int{1, 64} {
			b.Run(fmt.Sprintf("endpoints=%s/clients=%d", endpoints, workers), func(b *testing.B) {
				for range b.N {
					rate, p50, p99 := benchCreateKeys(b, clients[endpoints], workers, load)
					b.ReportMetric(rate, "creations/s")
					b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
					b.Logf("%s endpoints, %d clients: %.0f creations/s, p50 %v, p99 %v", endpoints, workers, rate, p50, p99)
				}
			})
		}
	}
}

// benchCreateKeys creates keys from the given number of goroutines for the given
// time and returns the rate and the 50th and 99th latency percentiles.
func benchCreateKeys(b *testing.B, c *kms.Client, workers int, d time.Duration) (float64, time.Duration, time.Duration) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    error
		wg        sync.WaitGroup
	)
	prefix := fmt.Sprintf("bench-%d-%d-", workers, time.Now().UnixNano())
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []time.Duration
			for i := 0; time.Since(start) < d; i++ {
				t := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: fmt.Sprintf("%s%d-%d", prefix, w, i)})
				cancel()
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				own = append(own, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed != nil {
		b.Fatalf("key creation failed: %v", failed)
	}
	slices.Sort(latencies)
	n := len(latencies)
	return float64(n) / elapsed.Seconds(), latencies[n/2], latencies[n*99/100]
}
