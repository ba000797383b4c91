package group

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// consumerProtocolType is the protocol type of Kafka consumers.
const consumerProtocolType = "consumer"

// protocol is one assignment protocol a member supports, with its metadata.
type protocol struct {
	name     string
	metadata []byte
}

// member is one member of a group.
type member struct {
	id               string
	instanceID       *string // group.instance.id of a static member
	clientID         string
	clientHost       string
	rebalanceTimeout int32 // ms
	sessionTimeout   int32 // ms
	protocolType     string
	protocols        []protocol // in the member's order of preference
	assignment       []byte

	// joinWaiter and syncWaiter answer a JoinGroup or SyncGroup waiting for
	// the rebalance; nil when none waits.
	joinWaiter func(joinResult)
	syncWaiter func(syncResult)
	// isNew is set from a member's first join until its first rebalance completes.
	isNew bool

	hb      Timer // session (or new-member join) timeout
	hbToken uint64
}

func (m *member) session() time.Duration {
	return time.Duration(m.sessionTimeout) * time.Millisecond
}

// metadata returns the member's metadata for a protocol.
func (m *member) metadata(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

// matches reports whether the member joined with exactly these protocols.
func (m *member) matches(ps []protocol) bool {
	if len(ps) != len(m.protocols) {
		return false
	}
	for i, p := range ps {
		if p.name != m.protocols[i].name || !bytes.Equal(p.metadata, m.protocols[i].metadata) {
			return false
		}
	}
	return true
}

// vote returns the member's preferred protocol among candidates.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.name] {
			return p.name
		}
	}
	return ""
}

// subscriptionTopics parses the topics of a consumer protocol subscription:
// int16 version, then an array (int32 count) of int16-length strings.
func subscriptionTopics(b []byte) ([]string, bool) {
	if len(b) < 6 {
		return nil, false
	}
	n := int32(binary.BigEndian.Uint32(b[2:6]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, false
	}
	out := make([]string, 0, n)
	for i := int32(0); i < n; i++ {
		if len(b) < 2 {
			return nil, false
		}
		l := int16(binary.BigEndian.Uint16(b))
		b = b[2:]
		if l < 0 || int(l) > len(b) {
			return nil, false
		}
		out = append(out, string(b[:l]))
		b = b[l:]
	}
	return out, true
}

// memberIDSuffix is as long as what newMemberID appends to its prefix.
const memberIDSuffix = "-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

// newMemberID returns a fresh member id: the client id (or, for a static
// member, the instance id), a dash and a random UUID, as Kafka does.
func newMemberID(clientID string, instanceID *string) string {
	prefix := clientID
	if instanceID != nil {
		prefix = *instanceID
	}
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return prefix + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
