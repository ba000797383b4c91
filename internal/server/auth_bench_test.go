package server

import (
	"context"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"strand/internal/config"
	"strand/internal/security"
	"strand/internal/security/securitytest"
)

// BenchmarkSASLSSLvsPlaintext produces then consumes the same volume over
// a PLAINTEXT and a SASL_SSL (SCRAM-SHA-512, TLS 1.3) listener of one
// broker, in one run, and reports both rates, their ratio and the cost of
// a new SASL_SSL connection (TLS handshake + SCRAM exchange) as
// handshakes/s:
//
//	go test -run XXX -bench SASLSSLvsPlaintext -benchtime 1x ./internal/server/
func BenchmarkSASLSSLvsPlaintext(b *testing.B) {
	dir := b.TempDir()
	ca := securitytest.NewCA(b)
	cert, key := ca.Issue(b, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	user, err := security.ParseAddScram("SCRAM-SHA-512=[name=bench,password=bench-secret]")
	if err != nil {
		b.Fatal(err)
	}
	plainAddr, saslAddr := freeAddr(b), freeAddr(b)
	cfg, err := config.Load("", [][2]string{{"log.dirs", b.TempDir()},
		{"listeners", "PLAINTEXT://" + plainAddr + ",SASL_SSL://" + saslAddr},
		{"sasl.enabled.mechanisms", "SCRAM-SHA-512"},
		{"ssl.keystore.type", "PEM"}, {"ssl.keystore.location", securitytest.WriteFile(b, dir, "server.pem", key, cert)},
	})
	if err != nil {
		b.Fatal(err)
	}
	serveForTest(b, cfg, WithBootstrapScram(user))
	secure := []kgo.Opt{kgo.DialTLSConfig(ca.ClientTLS(b, nil, nil)), kgo.SASL(scram.Auth{User: "bench", Pass: "bench-secret"}.AsSha512Mechanism())}
	const records, size = 20000, 1000
	value := make([]byte, size)
	run := func(addr, topic string, opts ...kgo.Opt) float64 {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerLinger(5 * time.Millisecond)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		c, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		for {
			if _, err := kadm.NewClient(cl).CreateTopic(c, 1, 1, nil, topic); err == nil || c.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		start := time.Now()
		errs := make(chan error, 1)
		for range records {
			cl.Produce(c, &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		}
		if err := cl.Flush(c); err != nil {
			b.Fatal(err)
		}
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		cl.AddConsumeTopics(topic)
		got := 0
		for got < records {
			fs := cl.PollFetches(c)
			if err := fs.Err(); err != nil {
				b.Fatal(err)
			}
			got += fs.NumRecords()
		}
		return float64(2*records*size) / time.Since(start).Seconds() / 1e6
	}
	b.ResetTimer()
	var plainMB, secureMB float64
	for i := range b.N {
		// Alternate the order so neither side always runs on a warm cache.
		if i%2 == 0 {
			plainMB += run(plainAddr, "plain"+string(rune('a'+i%26)))
			secureMB += run(saslAddr, "secure"+string(rune('a'+i%26)), secure...)
		} else {
			secureMB += run(saslAddr, "secure"+string(rune('a'+i%26)), secure...)
			plainMB += run(plainAddr, "plain"+string(rune('a'+i%26)))
		}
	}
	// Handshakes: new connections, each a TLS handshake plus SCRAM-SHA-512 (4096 iterations).
	dial, err := security.NewClientDialer(security.ClientConfig{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-512", User: "bench", Password: "bench-secret",
		Props: func(p string) string {
			switch p {
			case "ssl.truststore.certificates":
				return string(ca.PEM)
			case "ssl.truststore.type":
				return "PEM"
			case "ssl.enabled.protocols":
				return "TLSv1.2,TLSv1.3"
			}
			return ""
		}})
	if err != nil {
		b.Fatal(err)
	}
	const conns = 50
	start := time.Now()
	for range conns {
		c, err := dial(context.Background(), saslAddr, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(plainMB/n, "plaintext_MB/s")
	b.ReportMetric(secureMB/n, "sasl_ssl_MB/s")
	b.ReportMetric(secureMB/plainMB, "ratio")
	b.ReportMetric(conns/time.Since(start).Seconds(), "handshakes/s")
}
