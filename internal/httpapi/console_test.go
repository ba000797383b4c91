package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"strand/internal/cli"
	"strand/internal/testcluster"
)

func postForm(t *testing.T, u string, form url.Values, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestConsoleAPI: the JSON endpoints and the console's forms (produce,
// config change), bad input answered 400, cross-site posts refused.
func TestConsoleAPI(t *testing.T) {
	n := testcluster.StartNode(t, testcluster.WithHTTP())
	_, adm := client(t, n.Addr())
	createTopic(t, adm, "api", 2, 1)
	base := "http://" + n.HTTPAddr()

	// Produce through the JSON API and the form.
	resp, err := http.Post(base+"/api/topics/api/records", "application/json",
		strings.NewReader(`{"key":"k-json","value":"{\"via\":\"api\"}","headers":[{"key":"h","value":"1"}],"partition":1}`))
	if err != nil {
		t.Fatal(err)
	}
	var produced cli.ProducedView
	if err := json.NewDecoder(resp.Body).Decode(&produced); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST records: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if produced != (cli.ProducedView{Topic: "api", Partition: 1, Offset: 0}) {
		t.Fatalf("produced %+v", produced)
	}
	code, body := postForm(t, base+"/ui/produce", url.Values{"topic": {"api"}, "key": {"k-form"}, "value": {"from the form"},
		"headers": {"a=b\nc=d"}, "partition": {"0"}}, nil)
	if code != http.StatusOK || !strings.Contains(body, `id="produced"`) || !strings.Contains(body, "partition 0 at offset 0") {
		t.Fatalf("produce form: %d\n%s", code, body)
	}

	// Read them back: the latest of all partitions, newest first.
	var recs []cli.RecordView
	_, body = get(t, base+"/api/topics/api/records?limit=5")
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(recs) != 2 || *recs[0].Key != "k-form" || *recs[1].Value != `{"via":"api"}` || len(recs[0].Headers) != 2 {
		t.Fatalf("records: %s", body)
	}
	_, body = get(t, base+"/api/topics/api/records?partition=1&offset=0")
	if err := json.Unmarshal([]byte(body), &recs); err != nil || len(recs) != 1 || *recs[0].Key != "k-json" {
		t.Fatalf("records of partition 1 from 0: %s", body)
	}
	for _, bad := range []string{"limit=x", "partition=-1", "offset=abc", "time=yesterday"} {
		if code, body := get(t, base+"/api/topics/api/records?"+bad); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("records?%s: %d %s, want 400 with an error", bad, code, body)
		}
	}
	if code, body := get(t, base+"/api/topics/nosuch"); code != http.StatusBadGateway || !strings.Contains(body, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("/api/topics/nosuch: %d %s", code, body)
	}

	var tv cli.TopicView
	_, body = get(t, base+"/api/topics/api")
	if err := json.Unmarshal([]byte(body), &tv); err != nil || len(tv.Partitions) != 2 || tv.Partitions[1].HighWatermark != 1 {
		t.Fatalf("/api/topics/api: %s", body)
	}
	var cv cli.ClusterView
	_, body = get(t, base+"/api/cluster")
	if err := json.Unmarshal([]byte(body), &cv); err != nil || len(cv.Brokers) != 1 || !cv.Healthy {
		t.Fatalf("/api/cluster: %s", body)
	}
	if code, body := get(t, base+"/api/brokers/1/configs"); code != http.StatusOK || !strings.Contains(body, `"http.listener"`) {
		t.Fatalf("/api/brokers/1/configs: %d", code)
	}
	if code, body := get(t, base+"/ui/brokers/1"); code != http.StatusOK || !strings.Contains(body, "num.partitions") {
		t.Fatalf("/ui/brokers/1: %d %s", code, body)
	}

	// Change a config from the topic page; a cross-site post is refused.
	code, body = postForm(t, base+"/ui/topics/api/configs", url.Values{"name": {"retention.ms"}, "value": {"7200000"}}, nil)
	if code != http.StatusOK || !strings.Contains(body, `id="altered"`) {
		t.Fatalf("config form: %d\n%s", code, body)
	}
	eventually(t, 10*time.Second, func() string {
		cfgs, err := cli.TopicConfigs(t.Context(), adm, "api")
		if err != nil {
			return err.Error()
		}
		for _, c := range cfgs {
			if c.Name == "retention.ms" && c.Value != "7200000" {
				return "retention.ms is " + c.Value
			}
		}
		return ""
	})
	code, _ = postForm(t, base+"/ui/produce", url.Values{"topic": {"api"}, "value": {"csrf"}},
		map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
	if code != http.StatusForbidden {
		t.Fatalf("cross-site produce: %d, want 403", code)
	}
	code, body = postForm(t, base+"/ui/produce", url.Values{"topic": {"api"}, "headers": {"no-equals"}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "want key=value") {
		t.Fatalf("produce form with a bad header: %d", code)
	}
}
