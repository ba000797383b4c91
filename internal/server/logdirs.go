package server

import (
	"path/filepath"
	"sort"
	"syscall"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeLogDirs answers DescribeLogDirs (KIP-113) for this broker's
// one log directory (log.dirs): every hosted partition, or the requested
// ones, with its size in bytes and its offset lag (how far its log end is
// behind the high watermark it knows; 0 on a leader), plus the volume's
// total and usable bytes (v4+).
func (s *Server) handleDescribeLogDirs(req *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := s.dir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	rd := kmsg.NewDescribeLogDirsResponseDir()
	rd.Dir = dir
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		rd.TotalBytes = int64(st.Blocks) * st.Bsize
		rd.UsableBytes = int64(st.Bavail) * st.Bsize
	}
	var want map[string]map[int32]bool // nil: everything
	if req.Topics != nil {
		want = map[string]map[int32]bool{}
		for _, t := range req.Topics {
			if want[t.Topic] == nil {
				want[t.Topic] = map[int32]bool{}
			}
			for _, p := range t.Partitions {
				want[t.Topic][p] = true
			}
		}
	}
	byTopic := map[string]*kmsg.DescribeLogDirsResponseDirTopic{}
	for _, p := range s.parts.All() {
		if want != nil && !want[p.Topic][p.Index] {
			continue
		}
		rt := byTopic[p.Topic]
		if rt == nil {
			t := kmsg.NewDescribeLogDirsResponseDirTopic()
			t.Topic = p.Topic
			rt = &t
			byTopic[p.Topic] = rt
		}
		rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		rp.Partition = p.Index
		rp.Size = p.Log().Size()
		rp.OffsetLag = max(p.HighWatermark()-p.LogEndOffset(), 0)
		rt.Partitions = append(rt.Partitions, rp)
	}
	names := make([]string, 0, len(byTopic))
	for n := range byTopic {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rt := byTopic[n]
		sort.Slice(rt.Partitions, func(i, j int) bool { return rt.Partitions[i].Partition < rt.Partitions[j].Partition })
		rd.Topics = append(rd.Topics, *rt)
	}
	resp.Dirs = append(resp.Dirs, rd)
	return resp
}
