package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"strand/internal/cli"
	"strand/internal/server/servertest"
)

// TestCompletion: shell completion of topic and group names lists the
// cluster's topics and groups, and nothing (no error) with no broker.
func TestCompletion(t *testing.T) {
	b := servertest.Start(t)
	complete := func(brokers string, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		root := cli.NewRoot(&out, strings.NewReader(""))
		root.SetArgs(append([]string{"__complete", "--brokers", brokers, "--timeout", "10s"}, args...))
		root.SetErr(&bytes.Buffer{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("complete %v: %v", args, err)
		}
		return out.String()
	}
	ok(t, b.Addr, "", "topic", "create", "completed-topic", "--partitions", "1")
	ok(t, b.Addr, "v\n", "produce", "completed-topic")
	ok(t, b.Addr, "", "consume", "completed-topic", "-g", "completed-group", "-e")
	waitFor(t, 20*time.Second, func() string {
		if out := complete(b.Addr, "topic", "delete", ""); !strings.Contains(out, "completed-topic\n") {
			return "topic completion:\n" + out
		}
		return ""
	})
	waitFor(t, 20*time.Second, func() string {
		if out := complete(b.Addr, "group", "delete", ""); !strings.Contains(out, "completed-group\n") {
			return "group completion:\n" + out
		}
		return ""
	})
	if out := complete("127.0.0.1:1", "topic", "delete", ""); strings.Contains(out, "completed-topic") {
		t.Fatalf("topic completion without a broker:\n%s", out)
	}
}
