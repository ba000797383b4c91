package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"

	"github.com/hashicorp/go-hclog"
)

// raftLogger returns an hclog.Logger (what hashicorp/raft logs through) that
// hands every line to logger, so Raft's messages come out in the node's slog
// format with the node's handler: hclog writes one JSON object per line to
// an slogWriter, which turns its fields into slog attributes.
func raftLogger(logger *slog.Logger, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, JSONFormat: true, Output: &slogWriter{logger}})
}

type slogWriter struct{ logger *slog.Logger }

// Write implements io.Writer for one or more JSON lines.
func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		if len(line) > 0 {
			w.line(line)
		}
	}
	return len(p), nil
}

func (w *slogWriter) line(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.logger.Warn(string(line), "component", "raft")
		return
	}
	level := slog.LevelInfo
	switch m["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := m["@message"].(string)
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "@level" && k != "@message" && k != "@timestamp" && k != "@module" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := []slog.Attr{slog.String("component", "raft")}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, m[k]))
	}
	w.logger.LogAttrs(context.Background(), level, msg, attrs...)
}
