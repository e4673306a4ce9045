package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keep-kms/keep/internal/usage"
)

// The usage of keys, summed over their versions and over every node. Every
// node reports the same figures (the usage table is replicated): aggregate
// them across instances with max, not sum. There is one series per key
// that was ever reported used and still exists, labelled with its enclave
// and name: as many as the keys in use, and no more.
var (
	keyLabels          = []string{"enclave", "key"}
	keyDecryptsDesc    = prometheus.NewDesc(namespace+"_key_decrypts_30d", "Decryptions with any version of the key in the last 30 UTC days, summed over every node.", keyLabels, nil)
	keyGeneratesDesc   = prometheus.NewDesc(namespace+"_key_generates_30d", "Data keys generated and plaintexts encrypted with any version of the key in the last 30 UTC days, summed over every node.", keyLabels, nil)
	keyLastDecryptDesc = prometheus.NewDesc(namespace+"_key_last_decrypt_timestamp_seconds", "Unix time of the key's last decryption on any node, as last reported; absent if none was.", keyLabels, nil)
	keyLastGenDesc     = prometheus.NewDesc(namespace+"_key_last_generate_timestamp_seconds", "Unix time of the key's last generate or encrypt on any node, as last reported; absent if none was.", keyLabels, nil)
)

// usageCollector reports the usage of keys at each scrape.
type usageCollector struct {
	mu   sync.Mutex
	keys func() []usage.KeyUsage
}

// SetKeyUsage makes the metrics report the usage of the keys f returns.
func (m *Metrics) SetKeyUsage(f func() []usage.KeyUsage) {
	m.usage.mu.Lock()
	defer m.usage.mu.Unlock()
	m.usage.keys = f
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{keyDecryptsDesc, keyGeneratesDesc, keyLastDecryptDesc, keyLastGenDesc} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	keys := c.keys
	c.mu.Unlock()
	if keys == nil {
		return
	}
	for _, k := range keys() {
		ch <- prometheus.MustNewConstMetric(keyDecryptsDesc, prometheus.GaugeValue, float64(k.Decrypts30d), k.Enclave, k.Name)
		ch <- prometheus.MustNewConstMetric(keyGeneratesDesc, prometheus.GaugeValue, float64(k.Generates30d), k.Enclave, k.Name)
		if !k.LastDecrypt.IsZero() {
			ch <- prometheus.MustNewConstMetric(keyLastDecryptDesc, prometheus.GaugeValue, float64(k.LastDecrypt.Unix()), k.Enclave, k.Name)
		}
		if !k.LastGenerate.IsZero() {
			ch <- prometheus.MustNewConstMetric(keyLastGenDesc, prometheus.GaugeValue, float64(k.LastGenerate.Unix()), k.Enclave, k.Name)
		}
	}
}
