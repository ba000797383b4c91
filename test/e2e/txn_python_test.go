package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"strand/internal/server/servertest"
)

// txnPython is a confluent-kafka-python (librdkafka) exactly-once copy: a
// group consumer reads "txin", a transactional producer writes each record
// to "txout" and commits the consumer's offsets with
// send_offsets_to_transaction; a first transaction is aborted on purpose.
// A read_committed consumer then must see every input record once.
const txnPython = `
import sys
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
bs = sys.argv[1]
a = AdminClient({"bootstrap.servers": bs})
for f in a.create_topics([NewTopic("txin", 2, 1), NewTopic("txout", 2, 1)]).values():
    f.result()
p = Producer({"bootstrap.servers": bs})
for i in range(100):
    p.produce("txin", value=str(i).encode(), partition=i % 2)
p.flush(30)
tp = Producer({"bootstrap.servers": bs, "transactional.id": "py-eos"})
tp.init_transactions(30)
tp.begin_transaction()
tp.produce("txout", value=b"aborted", partition=0)
tp.flush(30)
tp.abort_transaction(30)
c = Consumer({"bootstrap.servers": bs, "group.id": "py-eos", "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
c.subscribe(["txin"])
copied = 0
while copied < 100:
    msgs = c.consume(50, 1.0)
    msgs = [m for m in msgs if m.error() is None]
    if not msgs:
        continue
    tp.begin_transaction()
    for m in msgs:
        tp.produce("txout", value=m.value(), partition=m.partition())
    tp.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    tp.commit_transaction(30)
    copied += len(msgs)
c.close()
r = Consumer({"bootstrap.servers": bs, "group.id": "py-check", "auto.offset.reset": "earliest",
              "isolation.level": "read_committed", "enable.partition.eof": True})
r.assign([TopicPartition("txout", 0), TopicPartition("txout", 1)])
seen, eof = [], set()
while len(eof) < 2:
    m = r.poll(5.0)
    if m is None:
        continue
    if m.error():
        eof.add(m.partition())
        continue
    seen.append(m.value().decode())
r.close()
want = sorted(str(i) for i in range(100))
if sorted(seen) != want:
    print("FAIL: read_committed saw %d records: %s" % (len(seen), sorted(seen)[:10]))
    sys.exit(1)
g = Consumer({"bootstrap.servers": bs, "group.id": "py-eos"})
offs = g.committed([TopicPartition("txin", 0), TopicPartition("txin", 1)], 10)
if [o.offset for o in offs] != [50, 50]:
    print("FAIL: committed offsets %s" % offs)
    sys.exit(1)
print("OK")
`

// TestConfluentKafkaPythonTransactions runs txnPython against an
// in-process broker. Without python3-confluent-kafka it skips locally and
// fails on CI (CI=true).
func TestConfluentKafkaPythonTransactions(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import confluent_kafka").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("confluent_kafka not importable by /usr/bin/python3 on CI: %v (apt-get install -y python3-confluent-kafka)", err)
		}
		t.Skip("python3-confluent-kafka not installed; CI runs this test")
	}
	b := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", txnPython, b.Addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("python: %v\n%s", err, out.String())
	}
}
