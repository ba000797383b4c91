package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadOptions say what Read consumes.
type ReadOptions struct {
	Topic string
	// ClientOpts are added to the clients' options (security: TLS, SASL).
	ClientOpts []kgo.Opt
	// Partitions to read; nil reads all.
	Partitions []int32
	// Start is where to begin in each partition: "start" (default), "end",
	// an offset N, or -N for N records before the end.
	Start string
	// FromTime (Unix ms, > 0) starts at the first record at or after it,
	// overriding Start.
	FromTime int64
	// Limit stops after this many records (0: no limit).
	Limit int
	// ToEnd stops once every partition reached the high watermark it had
	// when Read began.
	ToEnd bool
	// Group consumes as this consumer group, committing what was read
	// (Partitions then must be nil; Start applies where the group has no
	// offset).
	Group string
}

// errStop ends a Read from its callback without an error.
var errStop = errors.New("stop")

// Read consumes records as o says and calls fn for each, in order per
// partition, until the limit, the end (ToEnd), ctx's end, or fn returns an
// error (returned, except errStop).
func Read(ctx context.Context, brokers []string, o ReadOptions, fn func(*kgo.Record) error) error {
	admCl, err := NewClient(brokers, o.ClientOpts...)
	if err != nil {
		return err
	}
	adm := kadm.NewClient(admCl)
	defer admCl.Close()
	td, err := adm.ListTopicsWithInternal(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("topic %q: %w", o.Topic, err)
	}
	t, ok := td[o.Topic]
	if !ok || t.Err != nil {
		return fmt.Errorf("topic %q: %w", o.Topic, kerr.UnknownTopicOrPartition)
	}
	parts := o.Partitions
	if parts == nil {
		for p := range t.Partitions {
			parts = append(parts, p)
		}
		slices.Sort(parts)
	}
	for _, p := range parts {
		if _, ok := t.Partitions[p]; !ok {
			return fmt.Errorf("topic %q has no partition %d: %w", o.Topic, p, kerr.UnknownTopicOrPartition)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	var byTime kadm.ListedOffsets
	if o.FromTime > 0 {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, o.FromTime, o.Topic); err != nil {
			return fmt.Errorf("list offsets by time: %w", err)
		}
	}
	offsets := map[int32]kgo.Offset{}
	begin := map[int32]int64{} // where each partition starts, when known
	end := map[int32]int64{}
	for _, p := range parts {
		s, _ := starts.Lookup(o.Topic, p)
		en, _ := ends.Lookup(o.Topic, p)
		if s.Err != nil || en.Err != nil {
			return fmt.Errorf("offsets of %s-%d: %w", o.Topic, p, errors.Join(s.Err, en.Err))
		}
		end[p] = en.Offset
		var at int64
		switch start := o.Start; {
		case o.FromTime > 0:
			at = en.Offset
			if bt, ok := byTime.Lookup(o.Topic, p); ok && bt.Err == nil && bt.Offset >= 0 {
				at = bt.Offset
			}
		case start == "" || start == "start" || start == "beginning" || start == "earliest":
			at = s.Offset
		case start == "end" || start == "latest":
			at = en.Offset
		default:
			n, err := strconv.ParseInt(start, 10, 64)
			if err != nil {
				return fmt.Errorf("offset %q: want start, end, an offset or -N", start)
			}
			if n < 0 {
				at = max(en.Offset+n, s.Offset)
			} else {
				at = min(max(n, s.Offset), en.Offset)
			}
		}
		begin[p] = at
		offsets[p] = kgo.NewOffset().At(at)
	}
	opts := []kgo.Opt{kgo.FetchMaxWait(500 * time.Millisecond)}
	if o.Group != "" {
		if o.Partitions != nil {
			return errors.New("a group consumer reads every partition: drop the partition list or the group")
		}
		reset := kgo.NewOffset().AtStart()
		if o.Start == "end" || o.Start == "latest" {
			reset = kgo.NewOffset().AtEnd()
		} else if o.FromTime > 0 {
			reset = kgo.NewOffset().AfterMilli(o.FromTime)
		}
		opts = append(opts, kgo.ConsumerGroup(o.Group), kgo.ConsumeTopics(o.Topic), kgo.ConsumeResetOffset(reset),
			kgo.AutoCommitMarks(), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	} else {
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: offsets}))
	}
	cl, err := NewClient(brokers, append(opts, o.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer func() {
		if o.Group != "" {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = cl.CommitMarkedOffsets(cctx)
			cl.LeaveGroupContext(cctx)
			cancel()
		}
		cl.Close()
	}()
	if o.Group != "" {
		// The group resumes from its commits where it has them.
		committed, err := adm.FetchOffsets(ctx, o.Group)
		if err != nil {
			return fmt.Errorf("fetch offsets of group %q: %w", o.Group, err)
		}
		for _, p := range parts {
			if c, ok := committed.Lookup(o.Topic, p); ok && c.Err == nil && c.At >= 0 {
				begin[p] = c.At
			}
		}
	}
	pending := map[int32]bool{} // partitions not yet at their end (ToEnd)
	for _, p := range parts {
		if begin[p] < end[p] {
			pending[p] = true
		}
	}
	n := 0
	for {
		if o.ToEnd && len(pending) == 0 {
			return nil
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if o.ToEnd || o.Limit > 0 {
				return ctx.Err()
			}
			return nil // interrupted while following
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s-%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var stop error
		fs.EachRecord(func(r *kgo.Record) {
			if stop != nil {
				return
			}
			if err := fn(r); err != nil {
				stop = err
				return
			}
			if o.Group != "" {
				cl.MarkCommitRecords(r)
			}
			n++
			if r.Offset+1 >= end[r.Partition] {
				delete(pending, r.Partition)
			}
			if o.Limit > 0 && n >= o.Limit {
				stop = errStop
			}
		})
		if errors.Is(stop, errStop) {
			return nil
		}
		if stop != nil {
			return stop
		}
	}
}

// RecordView is one record as the console and `consume --json` show it.
// Keys and values that are not UTF-8 are base64 (with *_encoding set).
type RecordView struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"` // Unix ms
	Time          string       `json:"time"`      // RFC 3339
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []HeaderView `json:"headers"`
}

// HeaderView is one record header.
type HeaderView struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// NewRecordView converts a consumed record.
func NewRecordView(r *kgo.Record) RecordView {
	v := RecordView{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(),
		Time: r.Timestamp.UTC().Format(time.RFC3339Nano), Headers: []HeaderView{}}
	v.Key, v.KeyEncoding = textOrBase64(r.Key)
	v.Value, v.ValueEncoding = textOrBase64(r.Value)
	for _, h := range r.Headers {
		v.Headers = append(v.Headers, HeaderView{h.Key, string(h.Value)})
	}
	return v
}

func textOrBase64(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}

// formatRecord renders r with a kcat-like format: %t topic, %p partition,
// %o offset, %k key, %v value, %T timestamp (ms), %h headers (k=v,...),
// %K key length, %S value length, %% percent; \n \t \\ escapes.
func formatRecord(format string, r *kgo.Record) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if (c != '%' && c != '\\') || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		if c == '\\' {
			switch format[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte('\\')
				b.WriteByte(format[i])
			}
			continue
		}
		switch format[i] {
		case 't':
			b.WriteString(r.Topic)
		case 'p':
			b.WriteString(strconv.Itoa(int(r.Partition)))
		case 'o':
			b.WriteString(strconv.FormatInt(r.Offset, 10))
		case 'k':
			b.Write(r.Key)
		case 'v':
			b.Write(r.Value)
		case 'T':
			b.WriteString(strconv.FormatInt(r.Timestamp.UnixMilli(), 10))
		case 'K':
			b.WriteString(strconv.Itoa(len(r.Key)))
		case 'S':
			b.WriteString(strconv.Itoa(len(r.Value)))
		case 'h':
			for j, h := range r.Headers {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(h.Key + "=" + string(h.Value))
			}
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
