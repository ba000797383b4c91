package bench

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// consumeStall is how long the consume phase waits for a fetch that brings
// records before giving up.
const consumeStall = 30 * time.Second

// failures counts failed records and keeps the first error.
type failures struct {
	mu    sync.Mutex
	n     int64
	first error
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.first = err
	}
	f.n++
}

// produce runs the produce phase: o.Producers clients, each producing its
// share of o.Records with at most o.InFlight records unacknowledged. The
// latency of a record runs from its Produce call to its promise.
func produce(ctx context.Context, o Options, acks kgo.Acks, codec kgo.CompressionCodec) (ProduceReport, error) {
	rep := ProduceReport{
		Acks: o.Acks, Idempotent: o.Idempotent, Compression: o.Compression,
		LingerMs: float64(o.Linger) / float64(time.Millisecond), Producers: o.Producers, InFlight: o.InFlight,
		BatchBytes: o.BatchBytes, Partitioner: o.Partitioner,
	}
	values := makeValues(o.RecordSize, o.Records, o.Compression != "none")
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...), kgo.DefaultProduceTopic(o.Topic), kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(o.Linger),
		kgo.ProducerBatchMaxBytes(int32(o.BatchBytes)),
		// The promise runs before the client unbuffers its record: leave
		// headroom so Produce itself never blocks and skews latency.
		kgo.MaxBufferedRecords(2*o.InFlight + 16),
	}
	if !o.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if o.Partitioner == "round-robin" {
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	}
	secOpts, err := o.Security.KgoOpts()
	if err != nil {
		return rep, err
	}
	opts = append(opts, secOpts...)
	clients := make([]*kgo.Client, 0, o.Producers)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for range o.Producers {
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return rep, fmt.Errorf("produce: new client: %w", err)
		}
		clients = append(clients, cl)
	}

	lat := make([]time.Duration, o.Records) // each index written by exactly one promise
	var fails failures
	var wg sync.WaitGroup
	flushErrs := make([]error, len(clients))
	start := time.Now()
	for p, cl := range clients {
		lo, hi := p*o.Records/len(clients), (p+1)*o.Records/len(clients)
		wg.Go(func() { flushErrs[p] = produceRange(ctx, cl, values, lat, lo, hi, o.InFlight, &fails) })
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()

	rep.Errors = fails.n
	rep.Records = int64(o.Records) - fails.n
	rep.Bytes = rep.Records * int64(o.RecordSize)
	rep.MBps = rate(float64(rep.Bytes)/1e6, rep.Seconds)
	rep.RecordsPerSec = rate(float64(rep.Records), rep.Seconds)
	slices.Sort(lat)
	rep.Latency = LatencyReport{P50: pct(lat, 0.50), P95: pct(lat, 0.95), P99: pct(lat, 0.99), P999: pct(lat, 0.999), Max: pct(lat, 1)}
	if err := errors.Join(flushErrs...); err != nil {
		return rep, fmt.Errorf("produce: %w", err)
	}
	if fails.n > 0 {
		return rep, fmt.Errorf("produce: %d of %d records failed, first: %w", fails.n, o.Records, fails.first)
	}
	return rep, nil
}

// produceRange produces records lo..hi-1 on cl and waits for all their
// promises. Records it never produced because ctx ended count as failed.
func produceRange(ctx context.Context, cl *kgo.Client, values [][]byte, lat []time.Duration, lo, hi, inFlight int, fails *failures) error {
	sem := make(chan struct{}, inFlight)
	i := lo
produce:
	for ; i < hi; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break produce
		}
		idx := i // i outlives the loop body; each promise needs its own index
		r := &kgo.Record{Value: values[idx%len(values)]}
		t0 := time.Now()
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			lat[idx] = time.Since(t0)
			if err != nil {
				fails.add(err)
			}
			<-sem
		})
	}
	for ; i < hi; i++ {
		fails.add(ctx.Err())
	}
	err := cl.Flush(ctx)
	// Taking every slot waits for every promise (even if Flush gave up on
	// ctx) and orders their writes to lat before the caller reads it.
	for range inFlight {
		sem <- struct{}{}
	}
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// pct returns the q-quantile (nearest rank) of sorted, in milliseconds.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(max(int(q*float64(len(sorted))+0.999999)-1, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// consume reads back the records between start and end of every partition.
// A topic this run created is consumed with ConsumeTopics from the start;
// an existing one from the offsets it had before the produce phase.
func consume(ctx context.Context, o Options, created bool, start, end map[int32]int64) (ConsumeReport, error) {
	var rep ConsumeReport
	opts := []kgo.Opt{kgo.SeedBrokers(o.Brokers...)}
	if created {
		opts = append(opts, kgo.ConsumeTopics(o.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	} else {
		offs := make(map[int32]kgo.Offset, len(start))
		for p, off := range start {
			offs[p] = kgo.NewOffset().At(off)
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: offs}))
	}
	pending := make(map[int32]bool)
	for p, off := range end {
		if off > start[p] {
			pending[p] = true
		}
	}
	secOpts, err := o.Security.KgoOpts()
	if err != nil {
		return rep, err
	}
	opts = append(opts, secOpts...)
	t0 := time.Now()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return rep, fmt.Errorf("consume: new client: %w", err)
	}
	defer cl.Close()
	for len(pending) > 0 {
		pctx, cancel := context.WithTimeout(ctx, consumeStall)
		fetches := cl.PollFetches(pctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) && ctx.Err() == nil {
				return rep, fmt.Errorf("consume: no records for %s, %d partitions not read to the end", consumeStall, len(pending))
			}
			return rep, fmt.Errorf("consume %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < start[r.Partition] || r.Offset >= end[r.Partition] {
				return // not produced by this run
			}
			rep.Records++
			rep.Bytes += int64(len(r.Value))
			if r.Offset+1 >= end[r.Partition] {
				delete(pending, r.Partition)
			}
		})
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.MBps = rate(float64(rep.Bytes)/1e6, rep.Seconds)
	rep.RecordsPerSec = rate(float64(rep.Records), rep.Seconds)
	return rep, nil
}

// makeValues returns a pool of distinct record values of size bytes, at most
// records of them and about 8 MiB in total (more than a produce batch, so
// batches never repeat a value). Values are random, or about 2:1
// compressible when compressible is set.
func makeValues(size, records int, compressible bool) [][]byte {
	n := min(records, max(1, (8<<20)/size))
	buf := make([]byte, n*size)
	if compressible {
		fillSemiCompressible(buf)
	} else {
		fillRandom(buf)
	}
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	return vals
}

// fillRandom fills b with incompressible random bytes.
func fillRandom(b []byte) {
	crand.Read(b) // never returns an error (Go 1.24+)
}

// fillSemiCompressible fills b with alternating runs of random bytes and
// of a fixed English phrase, which compresses roughly 2:1.
func fillSemiCompressible(b []byte) {
	const text = "strand is a kafka-compatible broker; records flow from producers to consumers. "
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for i := 0; i < len(b); {
		run := min(8+rng.IntN(56), len(b)-i)
		if rng.IntN(2) == 0 {
			for j := range run {
				b[i+j] = byte(rng.Uint32())
			}
		} else {
			off := rng.IntN(len(text))
			for j := range run {
				b[i+j] = text[(off+j)%len(text)]
			}
		}
		i += run
	}
}
