package group

import "time"

// removeOffsets deletes a group's offsets for tps: it appends their
// tombstones, plus the group's when it is to die (dead, or Empty with no
// offset left), then applies them in memory. It returns the position to wait
// for durability (End 0 when nothing was appended). Called with g.mu held.
func (c *Coordinator) removeOffsets(g *group, tps []topicPartition, dead bool) (Position, error) {
	var recs []kv
	remove := map[topicPartition]bool{}
	for _, tp := range tps {
		if _, ok := g.offsets[tp]; (ok || len(g.inflight[tp]) > 0) && !remove[tp] {
			remove[tp] = true
			recs = append(recs, offsetTombstone(g.name, tp))
		}
	}
	left := 0 // offsets and commits in flight that stay
	for tp := range g.offsets {
		if !remove[tp] {
			left++
		}
	}
	for tp := range g.inflight {
		if _, ok := g.offsets[tp]; !ok && !remove[tp] {
			left++
		}
	}
	dead = dead || g.state == Empty && left == 0
	if dead {
		recs = append(recs, groupTombstone(g.name))
	}
	if len(recs) == 0 {
		return Position{}, nil
	}
	batch, err := buildBatch(c.clock.Now(), recs)
	if err != nil {
		return Position{}, err
	}
	pos, err := c.log.Append(g.shard.partition, batch)
	if err != nil {
		return Position{}, err
	}
	for tp := range remove {
		delete(g.offsets, tp)
		delete(g.inflight, tp)
	}
	if dead {
		c.killGroup(g)
		g.shard.remove(g)
		c.logger.Info("group removed", "group", g.name, "generation", g.generation)
	}
	return pos, nil
}

// scheduleSweep schedules the next expiry of old offsets.
func (c *Coordinator) scheduleSweep() {
	c.sweepMu.Lock()
	defer c.sweepMu.Unlock()
	c.sweep = c.clock.AfterFunc(c.cfg.RetentionCheckInterval, func() {
		c.run(func() {
			c.ExpireOffsets()
			c.scheduleSweep()
		})
	})
}

// ExpireOffsets removes offsets older than offsets.retention.minutes (the
// broker runs it every offsets.retention.check.interval.ms): all offsets of
// a group that has been Empty that long; offsets committed that long ago by
// a standalone consumer; for a Stable consumer group, offsets of topics it
// no longer subscribes to. A group left Empty without offsets is removed.
func (c *Coordinator) ExpireOffsets() {
	now := c.clock.Now()
	shards, _ := c.loadedShards()
	removed := 0
	for _, sh := range shards {
		for _, g := range sh.all() {
			g.mu.Lock()
			removed += c.expireGroup(g, now)
			g.mu.Unlock()
		}
	}
	if removed > 0 {
		c.logger.Info("expired committed offsets", "offsets", removed)
	}
}

// expireGroup applies retention to one group. Called with g.mu held.
func (c *Coordinator) expireGroup(g *group, now time.Time) int {
	if g.state == Dead {
		return 0
	}
	nowMs, retention := now.UnixMilli(), c.cfg.OffsetsRetention.Milliseconds()
	var base func(offsetEntry) int64
	skipSubscribed := false
	switch {
	case g.protocolType != "" && g.state == Empty:
		base = func(e offsetEntry) int64 {
			if !g.stateTime.IsZero() {
				return g.stateTime.UnixMilli()
			}
			return e.commitTime
		}
	case g.protocolType == consumerProtocolType && g.subscribed != nil && g.state == Stable:
		base, skipSubscribed = func(e offsetEntry) int64 { return e.commitTime }, true
	case g.protocolType == "":
		base = func(e offsetEntry) int64 { return e.commitTime }
	default:
		return 0
	}
	var expired []topicPartition
	for tp, e := range g.offsets {
		if skipSubscribed && g.subscribed[tp.topic] || len(g.inflight[tp]) > 0 {
			continue
		}
		if e.expireTime >= 0 && nowMs >= e.expireTime || e.expireTime < 0 && nowMs-base(e) >= retention {
			expired = append(expired, tp)
		}
	}
	if len(expired) == 0 && !(g.state == Empty && len(g.offsets) == 0) {
		return 0
	}
	if _, err := c.removeOffsets(g, expired, false); err != nil {
		c.logger.Warn("expiring offsets failed", "group", g.name, "err", err)
		return 0
	}
	return len(expired)
}
