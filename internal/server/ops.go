package server

import (
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/metadata"
	"strand/internal/metrics"
	"strand/internal/protocol"
	"strand/internal/replica"
)

// Operations view of the server: what /metrics, /readyz and the console read
// (internal/httpapi), at the time they ask. Nothing here runs on the request
// path except instrument, which only takes timestamps.

// instrument wraps a request's continuation so that, when it has produced the
// response, the request's timing and error codes are recorded (metrics).
func instrument(req *protocol.Request, read time.Time, run func() kmsg.Response) func() kmsg.Response {
	local := time.Now()
	return func() kmsg.Response {
		started := time.Now()
		resp := run()
		t := metrics.Timing{Read: read, Local: local, Started: started, Done: time.Now()}
		if resp == hangUp {
			resp = nil
		}
		metrics.RequestDone(req.Key, t, resp)
		return resp
	}
}

// Readiness is /readyz's answer: the node serves when it is registered and
// caught up with the metadata quorum, unfenced, and every partition the
// metadata says it leads is open here. A controller-only node is ready once
// the quorum has a leader.
type Readiness struct {
	Ready            bool     `json:"ready"`
	NodeID           int32    `json:"node_id"`
	Broker           bool     `json:"broker"`
	Controller       bool     `json:"controller"`
	CaughtUp         bool     `json:"caught_up"`
	Fenced           bool     `json:"fenced"`
	ControllerID     int32    `json:"controller_id"`
	ActiveController bool     `json:"active_controller"`
	MetadataOffset   uint64   `json:"metadata_offset"`
	MetadataLag      uint64   `json:"metadata_lag"` // committed entries not yet applied here
	LeaderPartitions int      `json:"leader_partitions"`
	OfflineLed       []string `json:"offline_led_partitions"`
	Reasons          []string `json:"reasons,omitempty"`
}

// Readiness reports whether the node serves, and why not.
func (s *Server) Readiness() Readiness {
	isBroker, isController := s.cfg.Roles()
	img := s.store.Image()
	ctrlID, _ := s.ctrl.Leader()
	r := Readiness{NodeID: s.cfg.NodeID(), Broker: isBroker, Controller: isController,
		ControllerID: ctrlID, ActiveController: s.ctrl.IsActive(), MetadataOffset: img.Offset, OfflineLed: []string{}}
	if _, commit, applied := s.ctrl.LogIndexes(); commit > applied {
		r.MetadataLag = commit - applied
	}
	if ctrlID < 0 {
		r.Reasons = append(r.Reasons, "the metadata quorum has no leader")
	}
	if isBroker {
		s.applyMu.Lock()
		r.CaughtUp = s.caughtUp
		s.applyMu.Unlock()
		if !r.CaughtUp {
			r.Reasons = append(r.Reasons, "not yet registered and caught up with the metadata quorum")
		}
		if !img.Live(r.NodeID) {
			r.Fenced = true
			r.Reasons = append(r.Reasons, "fenced or not registered in the current metadata")
		}
		for _, name := range img.TopicNames() {
			t := img.Topics[name]
			for _, p := range t.Partitions {
				if p.Leader != r.NodeID {
					continue
				}
				r.LeaderPartitions++
				hp, ok := s.parts.Get(name, p.Index)
				if !ok || hp.Log().Corruption() != nil {
					r.OfflineLed = append(r.OfflineLed, fmt.Sprintf("%s-%d", name, p.Index))
				}
			}
		}
		if r.CaughtUp && len(r.OfflineLed) > 0 {
			r.Reasons = append(r.Reasons, fmt.Sprintf("%d partitions it leads are not open or damaged", len(r.OfflineLed)))
		}
	}
	r.Ready = len(r.Reasons) == 0
	return r
}

// Snapshot implements metrics.Source.
func (s *Server) Snapshot() metrics.Snapshot {
	img := s.store.Image()
	self := s.cfg.NodeID()
	snap := metrics.Snapshot{ActiveController: s.ctrl.IsActive(), MetadataOffset: img.Offset,
		Connections: s.connectionCounts()}
	_, snap.MetadataCommitted, snap.MetadataApplied = s.ctrl.LogIndexes()
	if snap.ActiveController {
		snap.Brokers = len(img.Brokers)
		for _, b := range img.Brokers {
			if b.Fenced {
				snap.FencedBrokers++
			}
		}
	}
	hw := map[string]map[int32]int64{}
	for _, p := range s.parts.All() {
		l := p.Log()
		mp := metrics.Partition{Topic: p.Topic, Partition: p.Index, Size: l.Size(),
			LogStartOffset: p.LogStartOffset(), LogEndOffset: p.LogEndOffset(), HighWatermark: p.HighWatermark(),
			Leader: p.Leader() == self}
		snap.Partitions = append(snap.Partitions, mp)
		if hw[p.Topic] == nil {
			hw[p.Topic] = map[int32]int64{}
		}
		hw[p.Topic][p.Index] = mp.HighWatermark
	}
	slices.SortFunc(snap.Partitions, func(a, b metrics.Partition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	for _, name := range img.TopicNames() {
		t := img.Topics[name]
		minISR := int(s.dynFor(img).TopicConfig(t.Configs).Int("min.insync.replicas"))
		for _, p := range t.Partitions {
			if p.Leader < 0 && snap.ActiveController {
				snap.Offline++
			}
			if p.Leader != self {
				continue
			}
			snap.Leaders++
			if len(p.ISR) < len(p.Replicas) {
				snap.UnderReplicated++
			}
			switch {
			case len(p.ISR) < minISR:
				snap.UnderMinISR++
			case len(p.ISR) == minISR:
				snap.AtMinISR++
			}
		}
	}
	snap.GroupLag = s.groupLag(img, hw)
	return snap
}

// groupLag lists the committed offsets of the groups this broker coordinates
// with their lag behind the high watermark of the partition, where this
// broker hosts a replica of it (a follower's high watermark may trail the
// leader's by one fetch).
func (s *Server) groupLag(img *metadata.Image, hw map[string]map[int32]int64) []metrics.GroupLag {
	if s.groups == nil {
		return nil
	}
	var out []metrics.GroupLag
	groups := s.groups.ListGroups(kmsg.NewPtrListGroupsRequest())
	for _, g := range groups.Groups {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = 7
		req.Group = g.Group
		resp := s.groups.OffsetFetch(req)
		for _, t := range resp.Topics {
			if _, ok := img.Topic(t.Topic); !ok {
				continue
			}
			for _, p := range t.Partitions {
				if p.Offset < 0 {
					continue
				}
				end, ok := hw[t.Topic][p.Partition]
				if !ok {
					continue
				}
				out = append(out, metrics.GroupLag{Group: g.Group, Topic: t.Topic, Partition: p.Partition,
					Committed: p.Offset, Lag: max(end-p.Offset, 0)})
			}
		}
	}
	return out
}

// connectionCounts counts open connections per listener name.
func (s *Server) connectionCounts() map[string]int {
	names := map[string]string{} // bound port -> listener name
	if ls, err := s.cfg.Listeners(); err == nil {
		for i, ln := range s.listeners {
			if i < len(ls) {
				names[portOf(ln.Addr())] = ls[i].Name
			}
		}
	}
	out := map[string]int{}
	for _, name := range names {
		out[name] = 0
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		name, ok := names[portOf(c.c.LocalAddr())]
		if !ok {
			name = "other"
		}
		out[name]++
	}
	return out
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// producedRecords is how many records an append added (none for a retried
// duplicate).
func producedRecords(res replica.AppendResult) int {
	if res.Duplicate {
		return 0
	}
	return int(res.LastOffset - res.BaseOffset + 1)
}
