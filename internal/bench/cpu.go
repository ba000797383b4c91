package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel fixes it for the
// /proc ABI whatever its internal HZ).
const clockTicks = 100

// cpuMeter reads a broker's cumulative CPU time in seconds.
type cpuMeter struct {
	source string // what is read, for the report
	read   func(context.Context) (float64, error)
}

// procCPU reads utime+stime of a local process from /proc/<pid>/stat.
func procCPU(pid int) *cpuMeter {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	return &cpuMeter{source: path, read: func(context.Context) (float64, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		return parseProcStat(string(b))
	}}
}

// parseProcStat returns utime+stime in seconds from the text of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so the fields are counted from its last ')'.
func parseProcStat(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat %q: no command name", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks float64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat: cpu time %q: %w", v, err)
		}
		ticks += float64(n)
	}
	return ticks / clockTicks, nil
}

// metricsCPU reads process_cpu_seconds_total from a Prometheus text
// endpoint (the broker's /metrics).
func metricsCPU(url string) *cpuMeter {
	hc := &http.Client{Timeout: 5 * time.Second}
	return &cpuMeter{source: url, read: func(ctx context.Context) (float64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
				return strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("GET %s: %w", url, err)
		}
		return 0, fmt.Errorf("GET %s: no process_cpu_seconds_total", url)
	}}
}

// discoverMetrics finds the /metrics URL of the first seed broker from its
// http.listener config (a host-less or wildcard listener is reached at the
// seed's host) and returns a meter if it answers; nil otherwise. With several
// brokers it measures only that one.
func discoverMetrics(ctx context.Context, adm *kadm.Client, seed string) *cpuMeter {
	rcs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		return nil
	}
	var listener string
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "http.listener" && c.Value != nil {
				listener = *c.Value
			}
		}
		if listener != "" {
			break
		}
	}
	host, port, err := net.SplitHostPort(listener)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, _, err = net.SplitHostPort(seed); err != nil {
			return nil
		}
	}
	m := metricsCPU("http://" + net.JoinHostPort(host, port) + "/metrics")
	if _, err := m.read(ctx); err != nil {
		return nil
	}
	return m
}

// CPUReport is the broker CPU time spent during a phase.
type CPUReport struct {
	Source    string  `json:"source"`             // /proc/<pid>/stat or the metrics URL
	Seconds   float64 `json:"cpu_seconds"`        // CPU seconds used during the phase
	Cores     float64 `json:"cores"`              // Seconds / the phase's wall time
	PerGBSecs float64 `json:"cpu_seconds_per_gb"` // Seconds per 10^9 value bytes of the phase
}

// span measures the CPU a phase uses: call it before the phase and the
// returned function after it with the phase's wall time and value bytes. A
// nil meter, or a failed read, gives a nil report.
func (m *cpuMeter) span(ctx context.Context) func(seconds float64, bytes int64) *CPUReport {
	if m == nil {
		return func(float64, int64) *CPUReport { return nil }
	}
	before, err := m.read(ctx)
	return func(seconds float64, bytes int64) *CPUReport {
		after, err2 := m.read(ctx)
		if err != nil || err2 != nil {
			return nil
		}
		r := &CPUReport{Source: m.source, Seconds: after - before}
		r.Cores = rate(r.Seconds, seconds)
		r.PerGBSecs = rate(r.Seconds, float64(bytes)/1e9)
		return r
	}
}
