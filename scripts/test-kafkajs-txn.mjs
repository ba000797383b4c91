// test-kafkajs-txn.mjs: kafkajs transactions against strand (issue 11).
//
// Usage: node scripts/test-kafkajs-txn.mjs host:port
// (kafkajs is installed by `npm ci --prefix scripts/kafkajs`).
//
// A transactional kafkajs producer commits a first transaction, aborts a
// second (records and a sendOffsets both), and commits a third that also
// commits consumer offsets with sendOffsets. A read_committed kafkajs
// consumer must then see exactly the committed records in order and no
// aborted one; a read_uncommitted consumer must also see the aborted ones
// (so the abort really wrote data that read_committed filtered); the group
// offsets must be the committed transaction's, not the aborted one's; and a
// second producer with the same transactional.id must fence the first.
// Prints "N passed, 0 failed" and exits 0 only if every check holds.
import { createRequire } from 'node:module';
const require = createRequire(new URL('./kafkajs/package.json', import.meta.url));
const { Kafka, logLevel } = require('kafkajs');

const broker = process.argv[2];
if (!broker) { console.error('usage: test-kafkajs-txn.mjs host:port'); process.exit(2); }
const kafka = new Kafka({ clientId: 'strand-kafkajs-txn', brokers: [broker], logLevel: logLevel.ERROR,
  retry: { retries: 8 } });
let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name}: ${detail}`); }
}

const topic = 'js-txn', inTopic = 'js-txn-in', group = 'js-txn-group';
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: [
  { topic, numPartitions: 2, replicationFactor: 1 },
  { topic: inTopic, numPartitions: 2, replicationFactor: 1 }] });

const msgs = (prefix, from, n) => [...Array(n).keys()].map(i => ({ partition: (from + i) % 2, value: `${prefix}-${from + i}` }));
const producer = kafka.producer({ transactionalId: 'js-txn-id', idempotent: true, maxInFlightRequests: 1 });
await producer.connect();

// 1: committed.
let tx = await producer.transaction();
await tx.send({ topic, messages: msgs('c', 0, 50) });
await tx.commit();
// 2: aborted, with records and offsets.
tx = await producer.transaction();
await tx.send({ topic, messages: msgs('a', 0, 40) });
await tx.sendOffsets({ consumerGroupId: group, topics: [{ topic: inTopic, partitions: [
  { partition: 0, offset: '7' }, { partition: 1, offset: '7' }] }] });
await tx.abort();
// 3: committed, with offsets.
tx = await producer.transaction();
await tx.send({ topic, messages: msgs('c', 50, 50) });
await tx.sendOffsets({ consumerGroupId: group, topics: [{ topic: inTopic, partitions: [{ partition: 0, offset: '42' }] }] });
await tx.commit();
check('three transactions (commit, abort, commit) complete', true);

// read(readUncommitted, want): consumes topic from the beginning until it
// has `want` records, with a 30 s deadline, and returns the values per
// partition in order.
async function read(readUncommitted, want) {
  const consumer = kafka.consumer({ groupId: `js-txn-reader-${readUncommitted}-${Date.now()}`, readUncommitted,
    maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = { 0: [], 1: [] };
  let n = 0;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000);
    consumer.run({ eachMessage: async ({ partition, message }) => {
      got[partition].push(message.value.toString());
      if (++n >= want) { clearTimeout(timer); resolve(); }
    } });
  });
  // A short grace read: anything beyond `want` (an aborted record leaking
  // after the committed ones) would arrive within the next fetches.
  await new Promise((r) => setTimeout(r, 1000));
  await consumer.disconnect();
  return got;
}

const expect = { 0: [], 1: [] };
for (const m of [...msgs('c', 0, 50), ...msgs('c', 50, 50)]) expect[m.partition].push(m.value);
const rc = await read(false, 100);
const total = rc[0].length + rc[1].length;
check('read_committed sees the 100 committed records', total === 100, `saw ${total}`);
check('read_committed sees no aborted record', ![...rc[0], ...rc[1]].some(v => v.startsWith('a-')),
  `aborted values visible: ${[...rc[0], ...rc[1]].filter(v => v.startsWith('a-')).slice(0, 5)}`);
for (const p of [0, 1]) {
  check(`read_committed partition ${p} in order`, JSON.stringify(rc[p]) === JSON.stringify(expect[p]),
    `got ${rc[p].slice(0, 5)}... (${rc[p].length}), want ${expect[p].slice(0, 5)}... (${expect[p].length})`);
}
const ru = await read(true, 140);
const aborted = [...ru[0], ...ru[1]].filter(v => v.startsWith('a-')).length;
check('read_uncommitted sees the 40 aborted records too', aborted === 40 && ru[0].length + ru[1].length === 140,
  `saw ${ru[0].length + ru[1].length} records, ${aborted} aborted`);

const offs = await admin.fetchOffsets({ groupId: group, topics: [inTopic] });
const byP = Object.fromEntries(offs[0].partitions.map(p => [p.partition, p.offset]));
check('sendOffsets: committed transaction\'s offset visible, aborted one\'s not',
  byP[0] === '42' && byP[1] === '-1', JSON.stringify(byP));

// Fencing: a second producer with the same transactional.id fences the first.
const newer = kafka.producer({ transactionalId: 'js-txn-id', idempotent: true, maxInFlightRequests: 1 });
await newer.connect();
// kafkajs sends InitProducerId for a transactional id at its first transaction().
const ntx = await newer.transaction();
let fencedErr = null;
try {
  const old = await producer.transaction();
  await old.send({ topic, messages: [{ partition: 0, value: 'zombie' }] });
  await old.commit();
} catch (e) { fencedErr = e; }
check('older producer fenced after the newer one initialised', fencedErr !== null &&
  /fenc|epoch/i.test(`${fencedErr.type} ${fencedErr.message}`), `error: ${fencedErr && (fencedErr.type + ' ' + fencedErr.message)}`);
await ntx.send({ topic, messages: [{ partition: 0, value: 'newer' }] });
await ntx.commit();
const after = await read(false, 101);
const vals = [...after[0], ...after[1]];
check('zombie record not visible, newer producer\'s committed', !vals.includes('zombie') && vals.includes('newer'),
  `saw ${vals.length} records, zombie=${vals.includes('zombie')}, newer=${vals.includes('newer')}`);

await newer.disconnect();
await producer.disconnect().catch(() => {});
await admin.disconnect();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
