package worker

import (
	"sync"
	"sync/atomic"
)

// pool runs the pushes of the items being worked on, one device token per
// task, on a fixed set of long-lived goroutines. It takes the items in
// turn, one token from each, so a message to 10,000 devices shares the
// goroutines with the one-token messages fetched after it instead of
// holding them all until its last token started
// (TestBigMessageDoesNotStarveSmallOnes).
//
// The goroutines stay for the worker's life: a push needs a deep stack
// (HTTP/2, TLS, JSON), and a goroutine started per burst of work grows a
// fresh stack each time, which cost about a tenth of the worker's CPU
// (docs/benchmarks.md).
//
// add never blocks: what bounds the work is the budget of open reads
// (budget.go), which the fetch loops take before an item arrives.
type pool struct {
	size int
	busy atomic.Int64 // goroutines running a task
	todo atomic.Int64 // tasks added and not yet started

	mu      sync.Mutex
	wake    sync.Cond
	turns   []*item // items with tasks not yet started, in turn order
	idle    int     // goroutines waiting for work and not yet woken
	stopped bool
	wg      sync.WaitGroup
}

func newPool(size int) *pool {
	p := &pool{size: size}
	p.wake.L = &p.mu
	return p
}

// start launches the goroutines.
func (p *pool) start() {
	for range p.size {
		p.wg.Go(p.run)
	}
}

// add queues it: its tasks() will run, interleaved with every other item's.
func (p *pool) add(it *item) {
	n := it.tasks()
	p.todo.Add(int64(n))
	p.mu.Lock()
	p.turns = append(p.turns, it)
	wake := min(n, p.idle)
	p.idle -= wake
	p.mu.Unlock()
	for range wake {
		p.wake.Signal()
	}
}

// next blocks until a task is ready and returns its item and token index,
// or ok false once the pool stopped and every task was handed out.
func (p *pool) next() (it *item, i int, ok bool) {
	p.mu.Lock()
	for len(p.turns) == 0 {
		if p.stopped {
			p.mu.Unlock()
			return nil, 0, false
		}
		p.idle++
		p.wake.Wait()
	}
	it = p.turns[0]
	p.turns[0] = nil
	p.turns = p.turns[1:]
	i = it.started
	it.started++
	if it.started < it.tasks() {
		p.turns = append(p.turns, it) // its next token waits for its turn
	}
	p.mu.Unlock()
	p.todo.Add(-1)
	return it, i, true
}

func (p *pool) run() {
	for {
		it, i, ok := p.next()
		if !ok {
			return
		}
		p.busy.Add(1)
		it.runTask(i)
		p.busy.Add(-1)
	}
}

// stop lets the queued tasks finish and waits for every goroutine. Nothing
// may be added after stop.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.idle = 0
	p.mu.Unlock()
	p.wake.Broadcast()
	p.wg.Wait()
}

// saturation is the share of the goroutines running a task.
func (p *pool) saturation() float64 { return float64(p.busy.Load()) / float64(p.size) }

// waiting is the number of tasks queued but not started.
func (p *pool) waiting() int { return int(p.todo.Load()) }
