package httpapi

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/cli"
)

//go:embed ui
var uiFiles embed.FS

// console serves the web console (/ui, HTML rendered on the server, so it
// works without JavaScript; app.js adds refresh and the lag chart) and the
// JSON endpoints under /api. Both read the cluster through one kadm client.
type console struct {
	brokers []string
	logger  *slog.Logger
	pages   *template.Template

	lag    *lagHistory
	cancel context.CancelFunc // stops the lag sampler

	mu     sync.Mutex // guards cl, adm, closed
	cl     *kgo.Client
	adm    *kadm.Client
	closed bool
}

// requestTimeout bounds what one console request may take.
const requestTimeout = 10 * time.Second

func newConsole(brokers []string, logger *slog.Logger) (*console, error) {
	pages, err := template.New("").Funcs(template.FuncMap{
		"ids":    idList,
		"pretty": prettyValue,
		"bytes":  humanBytes,
		"join":   strings.Join,
	}).ParseFS(uiFiles, "ui/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &console{brokers: brokers, logger: logger, pages: pages, lag: newLagHistory(), cancel: cancel}
	go c.sample(ctx)
	return c, nil
}

// admin returns the shared admin client, creating it on first use.
func (c *console) admin() (*kadm.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("the console is shutting down")
	}
	if c.adm == nil {
		cl, err := cli.NewClient(c.brokers)
		if err != nil {
			return nil, err
		}
		c.cl, c.adm = cl, kadm.NewClient(cl)
	}
	return c.adm, nil
}

func (c *console) close() {
	c.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cl != nil {
		c.cl.Close()
		c.cl, c.adm = nil, nil
	}
}

func (c *console) register(mux *http.ServeMux) {
	static, _ := fs.Sub(uiFiles, "ui/static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	mux.HandleFunc("GET /ui", c.page("overview", c.overview))
	mux.HandleFunc("GET /ui/{$}", c.page("overview", c.overview))
	mux.HandleFunc("GET /ui/topics", c.page("topics", c.topics))
	mux.HandleFunc("GET /ui/topics/{name}", c.page("topic", c.topic))
	mux.HandleFunc("GET /ui/groups", c.page("groups", c.groups))
	mux.HandleFunc("GET /ui/groups/{name}", c.page("group", c.group))
	mux.HandleFunc("POST /ui/topics/{name}/configs", c.page("topic", c.alterTopicConfig))
	mux.HandleFunc("GET /ui/brokers/{id}", c.page("broker", c.broker))
	mux.HandleFunc("GET /ui/produce", c.page("produce", c.produceForm))
	mux.HandleFunc("POST /ui/produce", c.page("produce", c.produce))

	mux.HandleFunc("GET /api/cluster", c.api(func(ctx context.Context, adm *kadm.Client, _ *http.Request) (any, error) {
		return cli.Cluster(ctx, adm)
	}))
	mux.HandleFunc("GET /api/topics", c.api(func(ctx context.Context, adm *kadm.Client, r *http.Request) (any, error) {
		return cli.Topics(ctx, adm, r.URL.Query().Get("internal") == "true")
	}))
	mux.HandleFunc("GET /api/topics/{name}", c.api(func(ctx context.Context, adm *kadm.Client, r *http.Request) (any, error) {
		return cli.Topic(ctx, adm, r.PathValue("name"))
	}))
	mux.HandleFunc("GET /api/topics/{name}/records", c.api(func(ctx context.Context, _ *kadm.Client, r *http.Request) (any, error) {
		return c.records(ctx, r)
	}))
	mux.HandleFunc("POST /api/topics/{name}/records", c.api(func(ctx context.Context, _ *kadm.Client, r *http.Request) (any, error) {
		var in struct {
			Key       *string          `json:"key"`
			Value     string           `json:"value"`
			Headers   []cli.HeaderView `json:"headers"`
			Partition *int32           `json:"partition"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&in); err != nil {
			return nil, badRequest{fmt.Errorf("body: %w", err)}
		}
		p := int32(-1)
		if in.Partition != nil {
			p = *in.Partition
		}
		out, err := cli.Produce(ctx, c.brokers, r.PathValue("name"), []cli.ProduceInput{{Key: in.Key, Value: in.Value, Headers: in.Headers, Partition: p}})
		if err != nil {
			return nil, err
		}
		return out[0], nil
	}))
	mux.HandleFunc("GET /api/brokers/{id}/configs", c.api(func(ctx context.Context, adm *kadm.Client, r *http.Request) (any, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
		if err != nil {
			return nil, badRequest{fmt.Errorf("broker id %q: want a number", r.PathValue("id"))}
		}
		return cli.BrokerConfigs(ctx, adm, int32(id))
	}))
	mux.HandleFunc("GET /api/groups", c.api(func(ctx context.Context, adm *kadm.Client, _ *http.Request) (any, error) {
		return cli.Groups(ctx, adm)
	}))
	mux.HandleFunc("GET /api/groups/{name}", c.api(func(ctx context.Context, adm *kadm.Client, r *http.Request) (any, error) {
		g, err := cli.Group(ctx, adm, r.PathValue("name"))
		if err == nil {
			c.lag.record(g.Group, g.TotalLag, time.Now(), true)
		}
		return g, err
	}))
	mux.HandleFunc("GET /api/groups/{name}/lag-history", c.api(func(_ context.Context, _ *kadm.Client, r *http.Request) (any, error) {
		return c.lag.samples(r.PathValue("name")), nil
	}))
}

// badRequest marks an error as the caller's (HTTP 400).
type badRequest struct{ error }

// api serves fn's result as JSON; errors are {"error": "..."} with 400 for
// bad input and 502 for what the cluster answered.
func (c *console) api(fn func(ctx context.Context, adm *kadm.Client, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		adm, err := c.admin()
		var v any
		if err == nil {
			v, err = fn(ctx, adm, r)
		}
		if err != nil {
			code := http.StatusBadGateway
			var br badRequest
			if errors.As(err, &br) {
				code = http.StatusBadRequest
			}
			writeJSON(w, code, map[string]string{"error": cli.Explain(err).Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string // the active navigation entry
	Error string
	Data  any
}

// page renders template name with what fn gathers; an error is shown on the
// page (status 502) rather than as a bare error.
func (c *console) page(name string, fn func(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		pd := pageData{Nav: name}
		code := http.StatusOK
		adm, err := c.admin()
		if err == nil {
			pd.Title, pd.Data, err = fn(ctx, adm, r)
		}
		if err != nil {
			pd.Error = cli.Explain(err).Error()
			code = http.StatusBadGateway
			var br badRequest
			if errors.As(err, &br) {
				code = http.StatusBadRequest
			}
		}
		var buf bytes.Buffer
		if err := c.pages.ExecuteTemplate(&buf, name+".html", pd); err != nil {
			c.logger.Error("console template", "page", name, "err", err)
			http.Error(w, "template error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		w.Write(buf.Bytes())
	}
}

func (c *console) overview(ctx context.Context, adm *kadm.Client, _ *http.Request) (string, any, error) {
	v, err := cli.Cluster(ctx, adm)
	return "Cluster", v, err
}

func (c *console) topics(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	ts, err := cli.Topics(ctx, adm, r.URL.Query().Get("internal") == "true")
	return "Topics", ts, err
}

// topicPage is a topic with its latest records.
type topicPage struct {
	Topic      cli.TopicView
	Altered    string // the config just changed, if any
	Records    []cli.RecordView
	RecordsErr string
	Limit      int
	Partition  string
	Offset     string
	Time       string
}

func (c *console) topic(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	name := r.PathValue("name")
	tv, err := cli.Topic(ctx, adm, name)
	if err != nil {
		return name, nil, err
	}
	q := r.URL.Query()
	tp := topicPage{Topic: tv, Limit: 20, Partition: q.Get("partition"), Offset: q.Get("offset"), Time: q.Get("time")}
	recs, err := c.records(ctx, r)
	if err != nil {
		tp.RecordsErr = cli.Explain(err).Error()
	}
	tp.Records = recs
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		tp.Limit = n
	}
	return name, tp, nil
}

// records reads a topic's records as the query says: the latest `limit`
// (default 20, at most 500), or `limit` from `offset` or `time`, of one
// `partition` or all; newest first when reading the latest.
func (c *console) records(ctx context.Context, r *http.Request) ([]cli.RecordView, error) {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, badRequest{fmt.Errorf("limit %q: want a positive number", s)}
		}
		limit = min(n, 500)
	}
	o := cli.ReadOptions{Topic: r.PathValue("name"), ToEnd: true}
	if s := q.Get("partition"); s != "" {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 {
			return nil, badRequest{fmt.Errorf("partition %q: want a partition number", s)}
		}
		o.Partitions = []int32{int32(p)}
	}
	latest := false
	switch {
	case q.Get("time") != "":
		ms, err := parseTimeParam(q.Get("time"))
		if err != nil {
			return nil, badRequest{err}
		}
		o.FromTime, o.Limit = ms, limit
	case q.Get("offset") != "":
		if _, err := strconv.ParseInt(q.Get("offset"), 10, 64); err != nil {
			return nil, badRequest{fmt.Errorf("offset %q: want a number", q.Get("offset"))}
		}
		o.Start, o.Limit = q.Get("offset"), limit
	default:
		o.Start, latest = "-"+strconv.Itoa(limit), true
	}
	out := []cli.RecordView{}
	err := cli.Read(ctx, c.brokers, o, func(rec *kgo.Record) error {
		out = append(out, cli.NewRecordView(rec))
		return nil
	})
	if err != nil {
		return out, err
	}
	if latest {
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].Timestamp != out[j].Timestamp {
				return out[i].Timestamp > out[j].Timestamp
			}
			return out[i].Offset > out[j].Offset
		})
		out = out[:min(len(out), limit)]
	}
	return out, nil
}

func parseTimeParam(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("time %q: want RFC 3339 or Unix milliseconds", s)
}

// alterTopicConfig sets (or, with an empty value, deletes) one topic config
// from the topic page's form, then shows the topic again.
func (c *console) alterTopicConfig(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	name := r.PathValue("name")
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return name, nil, badRequest{err}
	}
	key, value := strings.TrimSpace(r.PostForm.Get("name")), strings.TrimSpace(r.PostForm.Get("value"))
	if key == "" {
		return name, nil, badRequest{errors.New("config name is empty")}
	}
	alter := kadm.AlterConfig{Op: kadm.DeleteConfig, Name: key}
	if value != "" {
		alter = kadm.AlterConfig{Op: kadm.SetConfig, Name: key, Value: &value}
	}
	resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{alter}, name)
	if err == nil {
		for _, rr := range resps {
			if rr.Err != nil {
				err = fmt.Errorf("%s: %w %s", key, rr.Err, rr.ErrMessage)
			}
		}
	}
	if err != nil {
		return name, nil, err
	}
	// Read the topic back from the controller's answer, not a broker that
	// may not have applied the change yet: show what was asked.
	title, data, err := c.topic(ctx, adm, r)
	if tp, ok := data.(topicPage); ok {
		tp.Altered = key
		if value != "" {
			tp.Altered += "=" + value
		} else {
			tp.Altered += " reset to its default"
		}
		data = tp
	}
	return title, data, err
}

// brokerPage is one broker's configs.
type brokerPage struct {
	ID      int32
	Configs []cli.ConfigView
}

func (c *console) broker(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
	if err != nil {
		return "Broker", nil, badRequest{fmt.Errorf("broker id %q: want a number", r.PathValue("id"))}
	}
	cfgs, err := cli.BrokerConfigs(ctx, adm, int32(id))
	return fmt.Sprintf("Broker %d", id), brokerPage{int32(id), cfgs}, err
}

func (c *console) groups(ctx context.Context, adm *kadm.Client, _ *http.Request) (string, any, error) {
	gs, err := cli.Groups(ctx, adm)
	return "Consumer groups", gs, err
}

// groupPage is a group with its lag history (JSON for the chart).
type groupPage struct {
	cli.GroupView
	History template.JS
}

func (c *console) group(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	name := r.PathValue("name")
	g, err := cli.Group(ctx, adm, name)
	if err != nil {
		return name, nil, err
	}
	c.lag.record(g.Group, g.TotalLag, time.Now(), true)
	hist, _ := json.Marshal(c.lag.samples(g.Group))
	return name, groupPage{g, template.JS(hist)}, nil
}

// producePage is the produce form and the result of the last produce.
type producePage struct {
	Topics    []string
	Topic     string
	Key       string
	Value     string
	Headers   string
	Partition string
	Result    *cli.ProducedView
}

func (c *console) produceForm(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	td, err := adm.ListTopics(ctx)
	if err != nil {
		return "Produce", producePage{}, err
	}
	return "Produce", producePage{Topics: td.Names(), Topic: r.URL.Query().Get("topic")}, nil
}

func (c *console) produce(ctx context.Context, adm *kadm.Client, r *http.Request) (string, any, error) {
	_, data, err := c.produceForm(ctx, adm, r)
	if err != nil {
		return "Produce", data, err
	}
	pp := data.(producePage)
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return "Produce", pp, badRequest{err}
	}
	pp.Topic, pp.Key, pp.Value, pp.Headers, pp.Partition = r.PostForm.Get("topic"), r.PostForm.Get("key"), r.PostForm.Get("value"), r.PostForm.Get("headers"), r.PostForm.Get("partition")
	if pp.Topic == "" {
		return "Produce", pp, badRequest{errors.New("choose a topic")}
	}
	in := cli.ProduceInput{Value: pp.Value, Partition: -1}
	if pp.Key != "" {
		in.Key = &pp.Key
	}
	if pp.Partition != "" {
		p, err := strconv.ParseInt(pp.Partition, 10, 32)
		if err != nil || p < 0 {
			return "Produce", pp, badRequest{fmt.Errorf("partition %q: want a partition number", pp.Partition)}
		}
		in.Partition = int32(p)
	}
	for _, line := range strings.Split(pp.Headers, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return "Produce", pp, badRequest{fmt.Errorf("header %q: want key=value", line)}
		}
		in.Headers = append(in.Headers, cli.HeaderView{Key: k, Value: v})
	}
	out, err := cli.Produce(ctx, c.brokers, pp.Topic, []cli.ProduceInput{in})
	if err != nil {
		return "Produce", pp, err
	}
	pp.Result = &out[0]
	return "Produce", pp, nil
}

func idList(xs []int32) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(int(x))
	}
	return strings.Join(parts, ", ")
}

// prettyValue indents a JSON value; anything else is returned as is.
func prettyValue(s *string) string {
	if s == nil {
		return "null"
	}
	v := strings.TrimSpace(*s)
	if len(v) > 1 && (v[0] == '{' || v[0] == '[') && json.Valid([]byte(v)) {
		var buf bytes.Buffer
		if json.Indent(&buf, []byte(v), "", "  ") == nil {
			return buf.String()
		}
	}
	return *s
}

func humanBytes(n int64) string {
	if n < 0 {
		return "?"
	}
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
