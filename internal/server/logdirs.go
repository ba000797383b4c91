package server

import (
	"errors"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/replica"
)

// handleDescribeLogDirs answers DescribeLogDirs (KIP-113) for each of this
// broker's log directories (log.dirs, in order): the hosted partitions in
// it, or the requested ones, each with its size in bytes and its offset lag
// (how far its log end is behind the high watermark it knows; 0 on a
// leader), plus the volume's total and usable bytes (v4+); a replica being
// moved (AlterReplicaLogDirs) also appears in its target dir as a future
// replica, with the copy's size and lag. A log dir taken
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
	// topicIn is the answer's entry for topic in the log dir holding the
	// partition's directory (dir), or nil when the partition was not asked
	// for or its dir is not one of dirs.
	topicIn := func(topic string, partition int32, dir func() string) *kmsg.DescribeLogDirsResponseDirTopic {
		if want != nil && !want[topic][partition] {
			return nil
		}
		i, ok := index[filepath.Clean(dir())]
		if !ok {
			return nil
		}
		rt := byDir[i][topic]
		if rt == nil {
			t := kmsg.NewDescribeLogDirsResponseDirTopic()
			t.Topic = topic
			rt = &t
			byDir[i][topic] = rt
		}
		return rt
	}
	for _, p := range s.parts.All() {
		rt := topicIn(p.Topic, p.Index, func() string { return filepath.Dir(p.Log().Dir()) })
		if rt == nil {
			continue
		}
		rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		rp.Partition = p.Index
		rp.Size = p.Log().Size()
		rp.OffsetLag = max(p.HighWatermark()-p.LogEndOffset(), 0)
		rt.Partitions = append(rt.Partitions, rp)
	}
	for tp, mv := range s.parts.Moving() { // future replicas (AlterReplicaLogDirs)
		rt := topicIn(tp.Topic, tp.Partition, func() string { return mv.Dir })
		if rt == nil {
			continue
		}
		rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		rp.Partition, rp.Size, rp.OffsetLag, rp.IsFuture = tp.Partition, mv.Size, mv.OffsetLag, true
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

// handleAlterReplicaLogDirs (KIP-113) starts moving each named replica to
// the named log dir of this broker (replica.Manager.MoveReplica; the copy
// runs in the background and DescribeLogDirs shows the replica in its new
// dir once it has switched). Per partition: LOG_DIR_NOT_FOUND for a dir
// that is not one of log.dirs or is offline, REPLICA_NOT_AVAILABLE for a
// partition this broker does not host (UNKNOWN_TOPIC_OR_PARTITION if the
// metadata has no such partition), KAFKA_STORAGE_ERROR when it is already
// moving to another dir.
func (s *Server) handleAlterReplicaLogDirs(req *kmsg.AlterReplicaLogDirsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterReplicaLogDirsResponse)
	img := s.store.Image()
	index := map[string]int{}
	for _, d := range req.Dirs {
		for _, t := range d.Topics {
			i, ok := index[t.Topic]
			if !ok {
				rt := kmsg.NewAlterReplicaLogDirsResponseTopic()
				rt.Topic = t.Topic
				resp.Topics = append(resp.Topics, rt)
				i = len(resp.Topics) - 1
				index[t.Topic] = i
			}
			for _, p := range t.Partitions {
				out := kmsg.NewAlterReplicaLogDirsResponseTopicPartition()
				out.Partition = p
				err := s.parts.MoveReplica(t.Topic, p, s.configuredLogDir(d.Dir))
				switch {
				case err == nil:
				case errors.Is(err, replica.ErrLogDirNotFound):
					out.ErrorCode = kerr.LogDirNotFound.Code
				case errors.Is(err, replica.ErrReplicaNotAvailable):
					out.ErrorCode = kerr.ReplicaNotAvailable.Code
					if mt, ok := img.Topic(t.Topic); !ok || p < 0 || int(p) >= len(mt.Partitions) {
						out.ErrorCode = kerr.UnknownTopicOrPartition.Code
					}
				default:
					out.ErrorCode = kerr.KafkaStorageError.Code
				}
				resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, out)
			}
		}
	}
	return resp
}

// configuredLogDir returns the log.dirs entry naming the same directory as
// dir (clients send the absolute paths DescribeLogDirs reports), or dir.
func (s *Server) configuredLogDir(dir string) string {
	want, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for _, d := range s.cfg.LogDirs() {
		if abs, err := filepath.Abs(d); err == nil && abs == want {
			return d
		}
	}
	return dir
}
