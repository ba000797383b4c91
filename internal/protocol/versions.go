package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// VersionRange is an inclusive range of versions of one API.
type VersionRange struct{ Min, Max int16 }

// supported lists every API the broker answers and the versions it implements.
// A version is only listed if the handler honours every field that version adds;
// the maxima are also capped by what kmsg can encode (checked in tests).
var supported = map[int16]VersionRange{
	int16(kmsg.Produce):                    {3, 11}, // v3+: magic v2 batches only; v12+ needs KIP-890
	int16(kmsg.Fetch):                      {4, 12}, // v13+ addresses topics by id
	int16(kmsg.ListOffsets):                {1, 8},
	int16(kmsg.Metadata):                   {0, 12},
	int16(kmsg.OffsetForLeaderEpoch):       {0, 4},
	int16(kmsg.ApiVersions):                {0, 3},
	int16(kmsg.CreateTopics):               {0, 7},
	int16(kmsg.DeleteTopics):               {0, 6},
	int16(kmsg.DeleteRecords):              {0, 2},
	int16(kmsg.InitProducerID):             {0, 4},
	int16(kmsg.DescribeConfigs):            {0, 4},
	int16(kmsg.AlterConfigs):               {0, 2},
	int16(kmsg.CreatePartitions):           {0, 3},
	int16(kmsg.IncrementalAlterConfigs):    {0, 1},
	int16(kmsg.DescribeCluster):            {0, 1},
	int16(kmsg.ElectLeaders):               {0, 2},
	int16(kmsg.AlterPartitionAssignments):  {0, 0},
	int16(kmsg.ListPartitionReassignments): {0, 0},
	int16(kmsg.DescribeLogDirs):            {0, 4}, // v4 adds volume sizes; one log dir per broker
	// Authorization and quotas (internal/security).
	int16(kmsg.DescribeACLs):         {0, 3},
	int16(kmsg.CreateACLs):           {0, 3},
	int16(kmsg.DeleteACLs):           {0, 3},
	int16(kmsg.DescribeClientQuotas): {0, 1},
	int16(kmsg.AlterClientQuotas):    {0, 1},
	// Consumer groups (internal/group), classic protocol.
	int16(kmsg.FindCoordinator): {0, 4}, // v4: batched keys; v5+ adds transaction errors and v6 share groups
	int16(kmsg.JoinGroup):       {0, 9},
	int16(kmsg.SyncGroup):       {0, 5},
	int16(kmsg.Heartbeat):       {0, 4},
	int16(kmsg.LeaveGroup):      {0, 5},
	int16(kmsg.OffsetCommit):    {0, 8}, // v9+ is for KIP-848 groups, v10 addresses topics by id
	int16(kmsg.OffsetFetch):     {0, 8}, // v9+ is for KIP-848 groups (member epochs)
	int16(kmsg.OffsetDelete):    {0, 0},
	int16(kmsg.DescribeGroups):  {0, 5}, // v6 reports GROUP_ID_NOT_FOUND for unknown groups
	int16(kmsg.ListGroups):      {0, 4}, // v5 filters by group type
	int16(kmsg.DeleteGroups):    {0, 2},
	// Authentication (internal/security); SASL requests are answered by the connection's auth gate.
	int16(kmsg.SASLHandshake):                {0, 1},
	int16(kmsg.SASLAuthenticate):             {0, 2},
	int16(kmsg.DescribeUserSCRAMCredentials): {0, 0},
	int16(kmsg.AlterUserSCRAMCredentials):    {0, 0},
	// Transactions (internal/txn/coordinator). AddPartitionsToTxn v4+ is
	// KIP-890's broker-side batched verification; EndTxn v4+/TxnOffsetCommit
	// v4+ add TRANSACTION_ABORTABLE (KIP-890 part 2), not implemented.
	int16(kmsg.AddPartitionsToTxn):   {0, 3},
	int16(kmsg.AddOffsetsToTxn):      {0, 3},
	int16(kmsg.EndTxn):               {0, 3},
	int16(kmsg.TxnOffsetCommit):      {0, 3},
	int16(kmsg.WriteTxnMarkers):      {0, 1},
	int16(kmsg.DescribeProducers):    {0, 0},
	int16(kmsg.DescribeTransactions): {0, 0},
	int16(kmsg.ListTransactions):     {0, 0},
}

// IsSupported reports whether the broker implements version v of API key.
func IsSupported(key, v int16) bool {
	r, ok := supported[key]
	return ok && v >= r.Min && v <= r.Max
}

// Supported returns the version range of an API and whether it is implemented.
func Supported(key int16) (VersionRange, bool) {
	r, ok := supported[key]
	return r, ok
}

// Keys returns every supported API key in ascending order.
func Keys() []int16 {
	keys := make([]int16, 0, len(supported))
	for k := int16(0); k < 100; k++ {
		if _, ok := supported[k]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}
