// Package cli is strand's admin command line: topic, group, cluster, acl, user,
// produce, consume, reassign and log-dirs commands (spf13/cobra) that talk
// to any Kafka-compatible cluster through franz-go's kadm, with human tables
// by default and --json everywhere. The views it gathers (view.go) are also
// what the broker's web console serves (internal/httpapi).
//
// Where the cluster is: --brokers, else $STRAND_BROKERS, else the brokers=
// line of the profile file (~/.config/strand/profile, or $STRAND_PROFILE),
// else 127.0.0.1:9092.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/security"
)

// DefaultBrokers is used when no flag, environment variable or profile names
// the cluster.
const DefaultBrokers = "127.0.0.1:9092"

// env is the state shared by every command: global flags and the client.
type env struct {
	brokers string
	json    bool
	timeout time.Duration
	sec     security.ClientSecurity // --security-protocol, --sasl-*, --tls-ca

	out io.Writer
	in  io.Reader
	cl  *kgo.Client
	adm *kadm.Client
}

// NewRoot returns the root command with every admin command attached; the
// caller adds its own (server, bench, verify). out and in are the commands'
// standard output and input.
func NewRoot(out io.Writer, in io.Reader) *cobra.Command {
	e := &env{out: out, in: in}
	root := &cobra.Command{
		Use:           "strand",
		Short:         "Strand: a Kafka-compatible broker and its admin tools in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	pf := root.PersistentFlags()
	pf.StringVar(&e.brokers, "brokers", "", "comma-separated seed brokers (default $STRAND_BROKERS, the profile's brokers=, or "+DefaultBrokers+")")
	pf.BoolVar(&e.json, "json", false, "print JSON instead of tables")
	pf.DurationVar(&e.timeout, "timeout", 30*time.Second, "how long a command may take")
	pf.StringVar(&e.sec.Protocol, "security-protocol", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol)")
	pf.StringVar(&e.sec.Mechanism, "sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	pf.StringVar(&e.sec.Username, "sasl-username", "", "SASL user")
	pf.StringVar(&e.sec.Password, "sasl-password", "", "SASL password (default $STRAND_SASL_PASSWORD)")
	pf.StringVar(&e.sec.CAFile, "tls-ca", "", "PEM file of the CA that signed the brokers' certificates (default: the system's)")
	pf.StringVar(&e.sec.KeystoreFile, "tls-keystore", "", "PEM file with this client's private key and certificate chain, for mutual TLS (ssl.client.auth)")
	root.AddCommand(topicCmd(e), groupCmd(e), clusterCmd(e), produceCmd(e), consumeCmd(e), reassignCmd(e), logDirsCmd(e))
	root.AddCommand(aclCmd(e), userCmd(e))
	return root
}

// Brokers resolves the seed brokers: flag, $STRAND_BROKERS, profile file,
// default.
func Brokers(flag string) []string {
	v := flag
	if v == "" {
		v = os.Getenv("STRAND_BROKERS")
	}
	if v == "" {
		v = profileValue("brokers")
	}
	if v == "" {
		v = DefaultBrokers
	}
	var out []string
	for b := range strings.SplitSeq(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ProfilePath is the profile file: $STRAND_PROFILE or
// $XDG_CONFIG_HOME/strand/profile (~/.config/strand/profile).
func ProfilePath() string {
	if p := os.Getenv("STRAND_PROFILE"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "strand", "profile")
}

// profileValue reads key=value from the profile file ("" when absent).
func profileValue(key string) string {
	p := ProfilePath()
	if p == "" {
		return ""
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// NewClient connects a franz-go client to brokers with the options admin
// commands want (no auto topic creation, short retries).
func NewClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequestRetries(3),
		kgo.RetryTimeout(10 * time.Second),
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.MetadataMaxAge(5 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", strings.Join(brokers, ","), err)
	}
	return cl, nil
}

// admin returns the (lazily created) admin client.
func (e *env) admin() (*kadm.Client, error) {
	if e.adm != nil {
		return e.adm, nil
	}
	secOpts, err := e.securityOpts()
	if err != nil {
		return nil, err
	}
	cl, err := NewClient(Brokers(e.brokers), secOpts...)
	if err != nil {
		return nil, err
	}
	e.cl, e.adm = cl, kadm.NewClient(cl)
	e.adm.SetTimeoutMillis(int32(min(e.timeout, time.Minute) / time.Millisecond))
	return e.adm, nil
}

// securityOpts are the client options of the security flags (none for
// PLAINTEXT); the password defaults to $STRAND_SASL_PASSWORD.
func (e *env) securityOpts() ([]kgo.Opt, error) {
	sec := e.sec
	if sec.Password == "" {
		sec.Password = os.Getenv("STRAND_SASL_PASSWORD")
	}
	if err := sec.Check(); err != nil {
		return nil, err
	}
	return sec.KgoOpts()
}

// run wraps a command body: a context bounded by --timeout, the client
// closed afterwards, and errors explained.
func (e *env) run(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), e.timeout)
		defer cancel()
		defer func() {
			if e.cl != nil {
				e.cl.Close()
				e.cl, e.adm = nil, nil
			}
		}()
		if err := fn(ctx, args); err != nil {
			return Explain(err)
		}
		return nil
	}
}

// Explain turns a Kafka error into its name and a sentence, and a timeout
// into a hint about the brokers.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		msg := err.Error()
		if !strings.Contains(msg, ke.Description) {
			msg += ": " + ke.Description
		}
		return errors.New(msg)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (are the brokers reachable? see --brokers, $STRAND_BROKERS)", err)
	}
	return err
}

// kafkaErr formats a per-item Kafka error ("" for nil).
func kafkaErr(err error) string {
	if err == nil {
		return ""
	}
	return Explain(err).Error()
}

// printJSON writes v as indented JSON.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// failure is nil when no item has an error; otherwise it names the first
// failure ("not created: TOPIC_ALREADY_EXISTS: ...") and how many failed.
func failure[T any](what string, items []T, errOf func(T) string) error {
	failed, first := 0, ""
	for _, it := range items {
		if e := errOf(it); e != "" {
			if failed == 0 {
				first = e
			}
			failed++
		}
	}
	switch {
	case failed == 0:
		return nil
	case len(items) == 1:
		return fmt.Errorf("%s: %s", what, first)
	}
	return fmt.Errorf("%d of %d %s; the first: %s", failed, len(items), what, first)
}
