package controller

import "strconv"

// LogIndexes is this member's view of the metadata log, for monitoring:
// the last index in its log, the commit index it knows and the last index
// applied to its image.
func (n *Node) LogIndexes() (last, commit, applied uint64) {
	st := n.raft.Stats()
	parse := func(k string) uint64 {
		v, _ := strconv.ParseUint(st[k], 10, 64)
		return v
	}
	return parse("last_log_index"), parse("commit_index"), parse("applied_index")
}
