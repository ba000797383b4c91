package e2e

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"strand/internal/config"
	"strand/internal/security/securitytest"
	"strand/internal/testcluster"
)

// TestOperatorSecureCommand starts the node exactly as issue 10's "Must
// work as a Kafka operator would write it" command does (loopback
// PLAINTEXT for the operator, SASL_SSL with SCRAM-SHA-512 for clients, a
// PEM keystore file named server.pem in the working directory), creates a
// SCRAM user with kadm's AlterUserSCRAMs over PLAINTEXT, and reads and
// writes with kcat over SASL_SSL. When the build has the built-in
// authorizer (authorizer.class.name is a known property), the command's
// authorizer properties are passed too, an ACL lets the user use one topic
// with kadm's CreateACLs, and kcat must get nothing from another topic.
func TestOperatorSecureCommand(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat not found on CI (CI=true): %v", err)
		}
		t.Skip("kcat not installed (apt-get install -y kcat); CI runs this test")
	}
	bin := testcluster.BuildBinary(t)
	dir := t.TempDir()
	ca := securitytest.NewCA(t)
	cert, key := ca.Issue(t, pkix.Name{CommonName: "broker"}, "127.0.0.1")
	securitytest.WriteFile(t, dir, "server.pem", key, cert)
	caPath := securitytest.WriteFile(t, dir, "ca.pem", ca.PEM)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	plainAddr, saslAddr := free(), free()
	args := []string{"server", "--data-dir", "data", "--listeners", "PLAINTEXT://" + plainAddr + ",SASL_SSL://" + saslAddr,
		"--set", "sasl.enabled.mechanisms=SCRAM-SHA-512", "--set", "ssl.keystore.type=PEM", "--set", "ssl.keystore.location=server.pem"}
	_, err := config.Load("", [][2]string{{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}, {"super.users", "User:ANONYMOUS"}})
	withAuthz := err == nil
	if withAuthz {
		args = append(args, "--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer", "--set", "super.users=User:ANONYMOUS")
	}
	var logBuf syncBuffer // written by the process's output copier while the test reads it
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("broker log:\n%s", logBuf.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(plainAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("create topic over PLAINTEXT: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "secret"); err != nil {
		t.Fatal(err)
	}
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "alice-secret"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("AlterUserSCRAMs: %v %v", err, res.Error())
	}
	if withAuthz {
		acl := kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternLiteral)
		if _, err := adm.CreateACLs(ctx, acl); err != nil {
			t.Fatalf("CreateACLs: %v", err)
		}
	}
	kcat := func(stdin string, extra ...string) (string, error) {
		a := append([]string{"-b", saslAddr, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=alice", "-X", "sasl.password=alice-secret", "-X", "ssl.ca.location=" + caPath}, extra...)
		kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
		defer kcancel()
		c := exec.CommandContext(kctx, "kcat", a...)
		c.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		if err != nil {
			return out.String(), &kcatError{err, errb.String()}
		}
		return out.String(), nil
	}
	if _, err := kcat("one\ntwo\n", "-P", "-t", "orders"); err != nil {
		t.Fatalf("kcat produce over SASL_SSL: %v", err)
	}
	got, err := kcat("", "-C", "-t", "orders", "-o", "beginning", "-e", "-q")
	if err != nil || got != "one\ntwo\n" {
		t.Fatalf("kcat consume over SASL_SSL: %q %v", got, err)
	}
	if withAuthz {
		if got, err := kcat("", "-C", "-t", "secret", "-o", "beginning", "-e", "-q"); err == nil && got != "" {
			t.Fatalf("kcat read a topic without an ACL: %q", got)
		}
	}
	if strings.Contains(logBuf.String(), "alice-secret") {
		t.Fatal("the password is in the broker log")
	}
	if err := filepath.Walk(filepath.Join(dir, "data"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("alice-secret")) {
			t.Errorf("the password is on disk in %s", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

type kcatError struct {
	err    error
	stderr string
}

func (e *kcatError) Error() string { return e.err.Error() + ": " + e.stderr }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
