// Package testcluster starts real strand broker processes for end-to-end tests.
//
// Tests drive a node the way an operator or a crash would: the broker runs as a
// separate OS process built from ./cmd/strand, so a test can SIGKILL it (kill -9),
// SIGSTOP/SIGCONT it, stop it cleanly with SIGTERM and restart it on the same
// address and data directory.
//
// Typical use:
//
//	n := testcluster.StartNode(t, testcluster.WithSet("num.partitions", "3"))
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(n.Addr()))
//	...
//	n.Kill()
//	n.Restart(t)
//
// StartNode builds the binary once per test process (see BuildBinary), picks a
// free loopback port, gives the node its own t.TempDir data directory and
// captures the node's stdout/stderr in a log file. When the test fails, the
// tail of that log is printed with t.Logf; t.Cleanup kills a process that is
// still running. A node built with the race detector (the default when the
// test binary itself runs with -race) that reports a data race fails the test.
//
// The harness is single-node today, but a Node already carries a node id and
// arbitrary extra flags so a multi-node Cluster can be layered on top later.
package testcluster
