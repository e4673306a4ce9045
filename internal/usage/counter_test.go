package usage

import (
	"sync"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	tests := []struct {
		name                 string
		generates, decrypts  int
		wantUsed             bool
		wantLastGen, wantDec bool
	}{
		{name: "unused"},
		{name: "generated", generates: 3, wantUsed: true, wantLastGen: true},
		{name: "decrypted", decrypts: 5, wantUsed: true, wantDec: true},
		{name: "both", generates: 1, decrypts: 2, wantUsed: true, wantLastGen: true, wantDec: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounter()
			before := time.Now().Add(-2 * time.Second)
			for range tt.generates {
				c.Generated()
			}
			for range tt.decrypts {
				c.Decrypted()
			}
			v, used := c.take()
			if used != tt.wantUsed || v.Generates != uint64(tt.generates) || v.Decrypts != uint64(tt.decrypts) {
				t.Fatalf("take = %+v, %v; want %d generates, %d decrypts, used %v", v, used, tt.generates, tt.decrypts, tt.wantUsed)
			}
			if got := !v.LastGenerate.IsZero(); got != tt.wantLastGen || (got && v.LastGenerate.Before(before)) {
				t.Errorf("last generate = %v", v.LastGenerate)
			}
			if got := !v.LastDecrypt.IsZero(); got != tt.wantDec || (got && v.LastDecrypt.Before(before)) {
				t.Errorf("last decrypt = %v", v.LastDecrypt)
			}
			if v, used := c.take(); used || v.Generates != 0 || v.Decrypts != 0 {
				t.Errorf("second take = %+v, %v; want nothing: the first one moved the counts", v, used)
			}
		})
	}
}

// TestCounterConcurrent checks that takes racing with uses lose and
// double nothing (run it with -race).
func TestCounterConcurrent(t *testing.T) {
	c := NewCounter()
	const workers, per = 4, 10000
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range per {
				c.Decrypted()
				c.Generated()
			}
		})
	}
	var gen, dec uint64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		v, used := c.take()
		if used && ((v.Decrypts > 0 && v.LastDecrypt.IsZero()) || (v.Generates > 0 && v.LastGenerate.IsZero())) {
			t.Fatalf("take = %+v: counts without a last use", v)
		}
		gen, dec = gen+v.Generates, dec+v.Decrypts
	}
	if gen != workers*per || dec != workers*per {
		t.Errorf("took %d generates and %d decrypts, want %d each", gen, dec, workers*per)
	}
}

// BenchmarkCounter is the cost the hot path pays per generate or decrypt,
// with every core using the same key version: the worst case, since all of
// them write the same cache line.
func BenchmarkCounter(b *testing.B) {
	for _, bc := range []struct {
		name string
		use  func(*Counter)
	}{
		{"Decrypted", (*Counter).Decrypted},
		{"Generated", (*Counter).Generated},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewCounter()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bc.use(c)
				}
			})
		})
	}
}
