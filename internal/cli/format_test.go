package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFormatRecord(t *testing.T) {
	r := &kgo.Record{Topic: "t", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("v\x00"),
		Timestamp: time.UnixMilli(1700000000123), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}}
	for format, want := range map[string]string{
		`%t/%p@%o %k=%v\n`: "t/2@7 k=v\x00\n",
		`%T %K %S [%h]`:    "1700000000123 1 2 [a=1,b=2]",
		`100%% %x \q \\ %`: "100% %x \\q \\ %",
		``:                 "",
	} {
		if got := formatRecord(format, r); got != want {
			t.Errorf("formatRecord(%q) = %q, want %q", format, got, want)
		}
	}
}

// FuzzFormatRecord: any --format string renders without panicking, and
// text without % or \ is copied as is.
func FuzzFormatRecord(f *testing.F) {
	for _, s := range []string{`%v\n`, `%t %p %o %k %v %T %h %K %S %%`, `\`, `%`, `\n\t\\\x`} {
		f.Add(s)
	}
	r := &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}}
	f.Fuzz(func(t *testing.T, format string) {
		out := formatRecord(format, r)
		if !strings.ContainsAny(format, `%\`) && out != format {
			t.Fatalf("plain %q rendered as %q", format, out)
		}
	})
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		"1700000000123":             1700000000123,
		"2023-11-14T22:13:20Z":      1700000000000,
		"2023-11-14T22:13:20.5Z":    1700000000500,
		"2023-11-14":                1699920000000,
		"2023-11-14T22:13:20+01:00": 1699996400000,
	} {
		if got, err := parseTime(in); err != nil || got != want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseTime("yesterday"); err == nil {
		t.Error("parseTime(yesterday) succeeded")
	}
}
