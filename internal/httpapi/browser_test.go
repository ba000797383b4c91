package httpapi_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/testcluster"
)

// chromium returns the headless browser, failing on CI (CI=true) when it is
// missing and skipping elsewhere (Debian package: chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found on CI (CI=true); .ci/run should apt-get install -y chromium")
	}
	t.Skip("chromium not installed (apt-get install -y chromium); CI runs this test")
	return ""
}

// browse runs headless Chromium on url: its DOM after scripts ran, and, when
// shot is not "", a screenshot saved there.
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,1000"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if shot != "" {
		out, err := exec.CommandContext(ctx, bin, append(args, "--screenshot="+shot, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("chromium --screenshot %s: %v\n%s", url, err, out)
		}
		if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
			t.Fatalf("chromium wrote no screenshot of %s: %v\n%s", url, err, out)
		}
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--dump-dom", url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	return string(dom)
}

// artifacts is where screenshots go: $STRAND_TEST_ARTIFACTS, or a
// directory kept for the test's life (logged).
func artifacts(t *testing.T) string {
	dir := os.Getenv("STRAND_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots in %s", dir)
	return dir
}

// TestConsoleInBrowser loads every console page of a 3-node cluster in
// headless Chromium, each from a different broker, and checks what it shows:
// the brokers, the topic and its partition count, a known record, the group
// and its lag.
func TestConsoleInBrowser(t *testing.T) {
	bin := chromium(t)
	shots := artifacts(t)
	c := testcluster.StartCluster(t, 3, testcluster.WithHTTP())
	cl, adm := client(t, c.Addrs()...)
	createTopic(t, adm, "browsed", 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 9 {
		recs = append(recs, &kgo.Record{Topic: "browsed", Partition: int32(i % 3), Value: []byte("filler")})
	}
	recs = append(recs, &kgo.Record{Topic: "browsed", Partition: 1, Key: []byte("known-key"),
		Value: []byte(`{"known":"record-4242"}`), Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("browser-test")}}})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A group that committed 4 of the 10 records: lag 6.
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "browsed", Partition: 0, At: 3, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: "browsed", Partition: 1, At: 1, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: "browsed", Partition: 2, At: 0, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "browsing-group", offs); err != nil {
		t.Fatal(err)
	}

	base := func(i int) string { return "http://" + c.Nodes[i].HTTPAddr() }
	checks := []struct {
		node int
		path string
		shot string
		want []string
	}{
		{0, "/ui", "overview.png", []string{`id="broker-count">3<`, `id="partition-count">`, "active controller", "healthy"}},
		{1, "/ui/topics", "", []string{`data-topic="browsed"`, `<td class="partitions">3</td>`}},
		{2, "/ui/topics/browsed", "topic.png", []string{`id="partition-count">3<`, "known-key", "record-4242", "origin=browser-test"}},
		{0, "/ui/groups", "", []string{"browsing-group"}},
		{1, "/ui/groups/browsing-group", "group.png", []string{`id="total-lag">6<`, "<polyline"}},
		{2, "/ui/produce?topic=browsed", "", []string{`<option selected="">browsed</option>`}},
		{2, "/ui/brokers/2", "", []string{"node.id", "min.insync.replicas"}},
	}
	for _, ck := range checks {
		shot := ""
		if ck.shot != "" {
			shot = filepath.Join(shots, ck.shot)
		}
		dom := browse(t, bin, base(ck.node)+ck.path, shot)
		for _, w := range ck.want {
			if !strings.Contains(dom, w) {
				t.Errorf("node %d %s: page lacks %q\n%s", ck.node+1, ck.path, w, dom)
			}
		}
		if strings.Contains(dom, `class="error"`) {
			t.Errorf("node %d %s shows an error:\n%s", ck.node+1, ck.path, dom)
		}
	}
	// Viewing the group started its lag history on that broker.
	_, body := get(t, base(1)+"/api/groups/browsing-group/lag-history")
	if !strings.Contains(body, `"lag": 6`) {
		t.Errorf("lag history after viewing the group: %s", body)
	}
}
