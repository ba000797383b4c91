package record

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkCheckProduce measures the produce validation of a 1000-record
// batch of 1 KiB about 2:1 compressible values, per codec: "header" is the
// header-only check produce did before (ValidateProduce: framing and CRC),
// "records" the full check (CheckProduce: decompression and every record).
// MB/s counts uncompressed record bytes.
func BenchmarkCheckProduce(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const text = "strand is a kafka-compatible broker; records flow from producers to consumers. "
	var recs []Record
	for range 1000 {
		v := make([]byte, 1024)
		for i := 0; i < len(v); {
			run := min(8+rng.IntN(56), len(v)-i)
			for j := range run {
				if i%2 == 0 {
					v[i+j] = byte(rng.Uint32())
				} else {
					v[i+j] = text[(i+j)%len(text)]
				}
			}
			i += run
		}
		recs = append(recs, Record{Timestamp: 1000, Value: v})
	}
	for _, c := range allCodecs {
		batch := MustBuild(BuildSpec{Codec: c, ProducerID: -1, BaseSequence: -1, Records: recs})
		raw := int64(len(MustBuild(BuildSpec{Codec: CodecNone, Records: recs})))
		b.Run(c.String()+"/header", func(b *testing.B) {
			b.SetBytes(raw)
			for b.Loop() {
				if _, err := ValidateProduce(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.String()+"/records", func(b *testing.B) {
			b.SetBytes(raw)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CheckProduce(batch, ProduceRules{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
