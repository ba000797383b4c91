// Package e2e holds end-to-end tests that run real strand broker processes
// (via internal/testcluster) and talk to them with real Kafka clients:
// franz-go (kgo, kadm) and, through scripts/test-kcat.sh, kcat/librdkafka.
//
// Run with the repository's test command, e.g.
//
//	go test -race -count=1 ./test/e2e/
//
// -short shortens the crash-recovery rounds; nothing is skipped.
package e2e
