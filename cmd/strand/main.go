// Command strand is the Strand broker: one binary that runs a Kafka-compatible
// broker node (`strand server`) and its tools (`strand bench`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"strand/internal/bench"
	"strand/internal/config"
	"strand/internal/readiness"
	"strand/internal/server"
	"strand/internal/verify"
)

const usage = `usage: strand <command> [flags]

commands:
  server   run a broker node (single node with embedded defaults: 127.0.0.1:9092, data in ./data)
  bench    measure produce/consume throughput and latency against a running node
  verify   produce under faults, read back, and check nothing acknowledged was lost, duplicated or reordered
  ready    exit 0 once a node is registered and back in the ISR of every partition it hosts (rolling restarts)

run 'strand <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(ctx, os.Args[2:], os.Stderr)
	case "bench":
		err = bench.Main(ctx, os.Args[2:], os.Stdout)
	case "verify":
		err = verify.Main(ctx, os.Args[2:], os.Stdout)
	case "ready":
		err = readiness.Main(ctx, os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "strand: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "strand %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// setFlag collects repeated --set key=value flags.
type setFlag [][2]string

func (s *setFlag) String() string { return "" }

func (s *setFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	*s = append(*s, [2]string{strings.TrimSpace(k), strings.TrimSpace(val)})
	return nil
}

func runServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("strand server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "Kafka-style .properties file (Kafka property names)")
	dataDir := fs.String("data-dir", "", "data directory (log.dirs; default ./data)")
	listeners := fs.String("listeners", "", "listeners, e.g. PLAINTEXT://127.0.0.1:9092")
	advertised := fs.String("advertised-listeners", "", "advertised.listeners given to clients")
	nodeID := fs.String("node-id", "", "node.id")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	var sets setFlag
	fs.Var(&sets, "set", "any broker property as key=value (repeatable), e.g. --set num.partitions=3")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(logger)

	var overrides [][2]string
	for _, f := range []struct{ name, val string }{
		{"log.dirs", *dataDir}, {"listeners", *listeners}, {"advertised.listeners", *advertised}, {"node.id", *nodeID},
	} {
		if f.val != "" {
			overrides = append(overrides, [2]string{f.name, f.val})
		}
	}
	cfg, err := config.Load(*cfgFile, append(overrides, sets...))
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	logger.Info("strand node ready", "node_id", cfg.NodeID(), "data_dir", cfg.DataDir())
	return srv.Serve(ctx)
}
