// Loading items from the journal into memory: replay when a queue opens,
// and the read-behind refill when its in-memory head runs dry. Both go
// through loadNext.

package queued

// loadNext reads the next items after the in-memory head from the journal
// onto the back of mem, opening the cursor if needed: at most maxItems,
// costing at most maxCost against the memory bounds (data plus
// itemOverhead each). With force it loads at least one item whatever it
// costs (a refill must make progress). It returns how many items and data
// bytes it loaded; none means the cursor has caught up or, without force,
// that the next item does not fit.
func (q *queue) loadNext(maxItems int, maxCost int64, force bool) (n, bytes int64, err error) {
	if q.cursor == nil {
		q.cursor = q.j.Cursor(q.memHighID)
	}
	items, err := q.cursor.NextWithin(maxItems, maxCost, itemOverhead)
	if err == nil && len(items) == 0 && force {
		items, err = q.cursor.Next(1, 0)
	}
	if err != nil {
		return 0, 0, err
	}
	for _, it := range items {
		q.mem.pushBack(entry{id: it.ID, addTime: it.AddTime, expiry: it.Expiry, data: it.Data})
		q.addMem(int64(len(it.Data)), true)
		q.memHighID = it.ID
		bytes += int64(len(it.Data))
	}
	return int64(len(items)), bytes, nil
}

// closeCursor drops the read-behind cursor, if any.
func (q *queue) closeCursor() {
	if q.cursor != nil {
		_ = q.cursor.Close()
		q.cursor = nil
	}
}

// replay loads the journal's live items: the head into memory up to the
// memory bound, the rest left behind for the cursor.
func (q *queue) replay() {
	js := q.j.Stats()
	var loaded, loadedBytes int64
	for loaded < js.Items {
		room := int64(1 << 20)
		if q.cfg.MaxMemorySize > 0 {
			room = min(room, q.cfg.MaxMemorySize-q.memCost())
		}
		if q.s.memLimit > 0 {
			room = min(room, q.s.memLimit-q.s.memCost.Load())
		}
		if room <= 0 {
			break
		}
		n, bytes, err := q.loadNext(4096, room, false)
		if err != nil {
			q.unavailable = unavailableError(q.name, err)
			q.log.Error("queue unavailable", "queue", q.name, "err", err)
			return
		}
		if n == 0 {
			break
		}
		loaded += n
		loadedBytes += bytes
	}
	q.behind = max(js.Items-loaded, 0)
	q.behindBytes = max(js.Bytes-loadedBytes, 0)
	q.totalItems = js.Items
	if q.behind == 0 {
		q.closeCursor()
	}
}

// refill reads the next items behind the in-memory head back from the
// journal. Called with mu held when mem is empty.
func (q *queue) refill() {
	if q.j == nil || q.behind == 0 {
		return
	}
	// Refill at most half the memory bound, so refills stay well inside it
	// (a refill loads at least one item, whatever its size).
	maxCost := q.cfg.MaxMemorySize / 2
	if maxCost <= 0 {
		maxCost = 1 << 20
	}
	if q.s.memLimit > 0 {
		maxCost = min(maxCost, (q.s.memLimit-q.s.memCost.Load())/2)
	}
	n, bytes, err := q.loadNext(int(min(q.behind, 4096)), maxCost, true)
	if err != nil {
		q.log.Error("read-behind refill failed", "queue", q.name, "err", err)
		return
	}
	q.behind -= n
	q.behindBytes -= bytes
	if n == 0 {
		q.log.Warn("read-behind cursor caught up with items still counted behind", "queue", q.name, "behind", q.behind)
		q.behind, q.behindBytes = 0, 0
	}
	if q.behind <= 0 {
		q.behind, q.behindBytes = 0, 0
		if q.pendingBehind == 0 {
			q.closeCursor()
		}
	}
}
