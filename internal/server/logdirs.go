package server

import (
	"path/filepath"
	"sort"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeLogDirs answers DescribeLogDirs (KIP-113) for each of this
// broker's log directories (log.dirs, in order): the hosted partitions in
// it, or the requested ones, each with its size in bytes and its offset lag
// (how far its log end is behind the high watermark it knows; 0 on a
// leader), plus the volume's total and usable bytes (v4+). A log dir taken
// offline after an I/O error is answered with KAFKA_STORAGE_ERROR.
func (s *Server) handleDescribeLogDirs(req *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
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
	dirs := s.cfg.LogDirs()
	byDir := make([]map[string]*kmsg.DescribeLogDirsResponseDirTopic, len(dirs))
	index := map[string]int{} // cleaned log dir -> its index in dirs
	for i, d := range dirs {
		byDir[i] = map[string]*kmsg.DescribeLogDirsResponseDirTopic{}
		index[filepath.Clean(d)] = i
	}
	for _, p := range s.parts.All() {
		if want != nil && !want[p.Topic][p.Index] {
			continue
		}
		i, ok := index[filepath.Clean(filepath.Dir(p.Log().Dir()))]
		if !ok {
			continue
		}
		rt := byDir[i][p.Topic]
		if rt == nil {
			t := kmsg.NewDescribeLogDirsResponseDirTopic()
			t.Topic = p.Topic
			rt = &t
			byDir[i][p.Topic] = rt
		}
		rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		rp.Partition = p.Index
		rp.Size = p.Log().Size()
		rp.OffsetLag = max(p.HighWatermark()-p.LogEndOffset(), 0)
		rt.Partitions = append(rt.Partitions, rp)
	}
	offline := s.parts.OfflineDirs()
	for i, dir := range dirs {
		rd := kmsg.NewDescribeLogDirsResponseDir()
		rd.Dir = dir
		if abs, err := filepath.Abs(dir); err == nil {
			rd.Dir = abs
		}
		if offline[filepath.Clean(dir)] != nil {
			rd.ErrorCode = kerr.KafkaStorageError.Code // a failed dir (replica/dirfail.go)
			resp.Dirs = append(resp.Dirs, rd)
			continue
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err == nil {
			rd.TotalBytes = int64(st.Blocks) * st.Bsize
			rd.UsableBytes = int64(st.Bavail) * st.Bsize
		}
		names := make([]string, 0, len(byDir[i]))
		for n := range byDir[i] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			rt := byDir[i][n]
			sort.Slice(rt.Partitions, func(a, b int) bool { return rt.Partitions[a].Partition < rt.Partitions[b].Partition })
			rd.Topics = append(rd.Topics, *rt)
		}
		resp.Dirs = append(resp.Dirs, rd)
	}
	return resp
}
