package cli

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ProducedView is where a produced record landed.
type ProducedView struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// ProduceInput is one record to produce.
type ProduceInput struct {
	Key       *string
	Value     string
	Headers   []HeaderView
	Partition int32 // -1: the default partitioner
}

// Produce writes records to topic (acks=all, idempotent) and returns where
// each landed, in order; extra are more client options (security).
func Produce(ctx context.Context, brokers []string, topic string, recs []ProduceInput, extra ...kgo.Opt) ([]ProducedView, error) {
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks())}
	manual := false
	for _, r := range recs {
		if r.Partition >= 0 {
			manual = true
		}
	}
	if manual {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := NewClient(brokers, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		kr := &kgo.Record{Topic: topic, Value: []byte(r.Value), Partition: max(r.Partition, 0)}
		if r.Key != nil {
			kr.Key = []byte(*r.Key)
		}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
		}
		krs[i] = kr
	}
	res := cl.ProduceSync(ctx, krs...)
	if err := res.FirstErr(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	// Results come in completion order; answer in input order.
	out := make([]ProducedView, 0, len(krs))
	for _, kr := range krs {
		out = append(out, ProducedView{kr.Topic, kr.Partition, kr.Offset})
	}
	return out, nil
}

func produceCmd(e *env) *cobra.Command {
	var key, keyDelim, value string
	var headers []string
	var partition int32
	c := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce records: one per line of stdin (or --value), with keys, headers and a partition (like kcat -P)",
		Args:  cobra.ExactArgs(1),
		Example: `  echo hello | strand produce orders
  printf 'k1:v1\nk2:v2\n' | strand produce orders -K :
  strand produce orders --value '{"id":1}' -k order-1 -H source=cli -p 0`,
	}
	f := c.Flags()
	f.StringVarP(&key, "key", "k", "", "key of every record")
	f.StringVarP(&keyDelim, "key-delimiter", "K", "", "split each line into key and value at the first delimiter")
	f.StringVar(&value, "value", "", "produce this one record instead of reading stdin")
	f.StringArrayVarP(&headers, "header", "H", nil, "header key=value (repeatable)")
	f.Int32VarP(&partition, "partition", "p", -1, "partition (default: by key hash, sticky without a key)")
	c.ValidArgsFunction = e.completeTopics
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		var hs []HeaderView
		for _, h := range headers {
			k, v, ok := strings.Cut(h, "=")
			if !ok || k == "" {
				return fmt.Errorf("--header %q: want key=value", h)
			}
			hs = append(hs, HeaderView{k, v})
		}
		mk := func(line string) ProduceInput {
			in := ProduceInput{Value: line, Headers: hs, Partition: partition}
			if c.Flags().Changed("key") {
				in.Key = &key
			}
			if keyDelim != "" {
				if k, v, ok := strings.Cut(line, keyDelim); ok {
					in.Key, in.Value = &k, v
				}
			}
			return in
		}
		var recs []ProduceInput
		if c.Flags().Changed("value") {
			recs = append(recs, mk(value))
		} else {
			sc := bufio.NewScanner(e.in)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				recs = append(recs, mk(sc.Text()))
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("stdin: %w", err)
			}
		}
		if len(recs) == 0 {
			return fmt.Errorf("nothing to produce: stdin was empty (or give --value)")
		}
		secOpts, err := e.securityOpts()
		if err != nil {
			return err
		}
		out, err := Produce(ctx, Brokers(e.brokers), args[0], recs, secOpts...)
		for _, p := range out {
			if e.json {
				e.printJSONLine(p)
			} else {
				fmt.Fprintf(e.out, "%s/%d@%d\n", p.Topic, p.Partition, p.Offset)
			}
		}
		return err
	})
	return c
}

func consumeCmd(e *env) *cobra.Command {
	var partitions []int32
	var offset, fromTime, group, format string
	var num int
	var exit bool
	c := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Consume records (like kcat -C): from an offset or time, by partition or as a group, formatted",
		Args:  cobra.ExactArgs(1),
		Example: `  strand consume orders -e                         # everything, then exit
  strand consume orders -o -10 -e -f '%p@%o %k=%v\n' # the last 10 of each partition
  strand consume orders --from-time 2026-01-02T15:00:00Z -n 5 --json
  strand consume orders -g billing                  # as a group member, committing`,
	}
	f := c.Flags()
	f.Int32SliceVarP(&partitions, "partition", "p", nil, "partitions to read (default: all)")
	f.StringVarP(&offset, "offset", "o", "start", "start, end, an offset, or -N (N before the end)")
	f.StringVar(&fromTime, "from-time", "", "start at the first record at or after this time (RFC 3339 or Unix ms)")
	f.StringVarP(&group, "group", "g", "", "consume as this group (commits its offsets)")
	f.IntVarP(&num, "num", "n", 0, "stop after this many records")
	f.BoolVarP(&exit, "exit", "e", false, "stop at the end of every partition (its high watermark when the command started)")
	f.StringVarP(&format, "format", "f", "%v\\n", "output format: %t topic %p partition %o offset %k key %v value %T timestamp %h headers %K/%S key/value size")
	c.ValidArgsFunction = e.completeTopics
	c.RunE = func(cmd *cobra.Command, args []string) error {
		// Following a topic has no deadline; --timeout bounds only -e and -n.
		ctx := cmd.Context()
		if exit || num > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, e.timeout)
			defer cancel()
		}
		o := ReadOptions{Topic: args[0], Partitions: partitions, Start: offset, Limit: num, ToEnd: exit, Group: group}
		if fromTime != "" {
			ms, err := parseTime(fromTime)
			if err != nil {
				return fmt.Errorf("--from-time: %w", err)
			}
			o.FromTime = ms
		}
		if _, err := strconv.ParseInt(offset, 10, 64); err != nil && !isNamedOffset(offset) {
			return fmt.Errorf("--offset %q: want start, end, an offset or -N", offset)
		}
		secOpts, err := e.securityOpts()
		if err != nil {
			return err
		}
		o.ClientOpts = secOpts
		err = Read(ctx, Brokers(e.brokers), o, func(r *kgo.Record) error {
			if e.json {
				return e.printJSONLine(NewRecordView(r))
			}
			_, err := fmt.Fprint(e.out, formatRecord(format, r))
			return err
		})
		return Explain(err)
	}
	return c
}

func isNamedOffset(s string) bool {
	switch s {
	case "start", "beginning", "earliest", "end", "latest":
		return true
	}
	return false
}

// printJSONLine writes v as one line of JSON (for streams of records).
func (e *env) printJSONLine(v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	_, err = e.out.Write(append(b, '\n'))
	return err
}
