// Command strand is the Strand broker: one binary that runs a Kafka-compatible
// broker node (`strand server`), its tools (`strand bench`, `strand verify`,
// `strand ready`) and the admin commands of internal/cli (topic, group, cluster, produce,
// consume, reassign, log-dirs), with shell completion (`strand completion`).
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

	"github.com/spf13/cobra"

	"strand/internal/bench"
	"strand/internal/cli"
	"strand/internal/config"
	"strand/internal/httpapi"
	"strand/internal/metrics"
	"strand/internal/security"
	"strand/internal/readiness"
	"strand/internal/server"
	"strand/internal/verify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := cli.NewRoot(os.Stdout, os.Stdin)
	// server, bench and verify keep their own flag sets: cobra passes their
	// arguments through untouched.
	for _, c := range []struct {
		name, short string
		run         func(ctx context.Context, args []string) error
	}{
		{"server", "Run a broker node (single node with embedded defaults: 127.0.0.1:9092, data in ./data)",
			func(ctx context.Context, args []string) error { return runServer(ctx, args, os.Stderr) }},
		{"bench", "Measure produce/consume throughput and latency against a running node",
			func(ctx context.Context, args []string) error { return bench.Main(ctx, args, os.Stdout) }},
		{"verify", "Produce under faults, read back, and check nothing acknowledged was lost, duplicated or reordered",
			func(ctx context.Context, args []string) error { return verify.Main(ctx, args, os.Stdout) }},
		{"ready", "Exit 0 once a node is registered and back in the ISR of every partition it hosts (rolling restarts)",
			func(ctx context.Context, args []string) error { return readiness.Main(ctx, args, os.Stdout) }},
	} {
		root.AddCommand(&cobra.Command{
			Use:                c.name + " [flags]",
			Short:              c.short + " ('strand " + c.name + " -h' for its flags)",
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				err := c.run(cmd.Context(), args)
				if errors.Is(err, flag.ErrHelp) {
					return nil
				}
				return err
			},
		})
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.CommandPath(), err)
		if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
			strings.Contains(err.Error(), "arg(s)") || strings.HasPrefix(err.Error(), "required flag") {
			fmt.Fprintf(os.Stderr, "run '%s --help' for usage\n", cmd.CommandPath())
			os.Exit(2)
		}
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
	var addScram scramFlag
	fs.Var(&addScram, "add-scram", "SCRAM user created when this node forms the cluster, as kafka-storage format --add-scram: 'SCRAM-SHA-512=[name=admin,password=admin-secret]' (repeatable)")
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
	srv, err := server.New(cfg, logger, server.WithBootstrapScram(addScram...))
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		return err
	}
	web, err := startHTTP(cfg, srv, logger)
	if err != nil {
		srv.Close()
		return err
	}
	logger.Info("strand node ready", "node_id", cfg.NodeID(), "data_dir", cfg.DataDir())
	if web == nil {
		return srv.Serve(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	webDone := make(chan error, 1)
	go func() { webDone <- web.Serve(ctx) }()
	err = srv.Serve(ctx)
	cancel()
	if werr := <-webDone; werr != nil && err == nil {
		logger.Warn("http listener", "err", werr)
	}
	return err
}

// startHTTP binds http.listener (nil when it is empty): metrics, health,
// readiness, pprof and the console, whose client talks to this node.
func startHTTP(cfg *config.Broker, srv *server.Server, logger *slog.Logger) (*httpapi.Server, error) {
	addr := cfg.String("http.listener")
	if addr == "" {
		return nil, nil
	}
	var brokers []string
	if isBroker, _ := cfg.Roles(); isBroker {
		if client, _, err := cfg.Endpoints(); err == nil {
			brokers = []string{client.Addr()}
		}
	}
	web, err := httpapi.Listen(httpapi.Options{
		Addr:     addr,
		Pprof:    cfg.Bool("http.pprof.enable"),
		Ready:    func() (bool, any) { r := srv.Readiness(); return r.Ready, r },
		Registry: metrics.NewRegistry(srv),
		Brokers:  brokers,
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("listening", "listener", "HTTP", "addr", web.Addr())
	return web, nil
}

// scramFlag collects repeated --add-scram flags, salted as they are parsed
// (the password is not kept).
type scramFlag []security.ScramUser

func (s *scramFlag) String() string { return "" }

func (s *scramFlag) Set(v string) error {
	u, err := security.ParseAddScram(v)
	if err != nil {
		return err
	}
	*s = append(*s, u)
	return nil
}
