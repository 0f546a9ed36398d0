package node

import "time"

// tickClock counts the core's ticks by elapsed monotonic time, for lease
// mode. A time.Ticker drops ticks while the loop is busy (its channel
// holds one), so a loop that stalls would count fewer ticks than the time
// that passed, and a leader that counts too few holds its lease too long
// in real time. With tickClock the loop ticks once per elapsed interval,
// catching up after a stall, and before every lease check (readIndex), so
// a node's count trails its monotonic clock by less than one tick: the
// phase that Config.LeaseDriftTicks allows for. In ReadIndex mode the
// loop keeps one Tick per ticker event (missed ticks only delay
// elections, which is harmless).
type tickClock struct {
	// interval is Config.TickInterval.
	interval time.Duration
	// origin is when counting started; done the ticks counted since.
	origin time.Time
	done   int64
}

// start begins counting at now.
func (c *tickClock) start(interval time.Duration, now time.Time) {
	c.interval, c.origin, c.done = interval, now, 0
}

// due returns how many ticks elapsed since the last call, and counts them.
func (c *tickClock) due(now time.Time) int {
	want := int64(now.Sub(c.origin) / c.interval)
	d := want - c.done
	if d <= 0 {
		return 0
	}
	c.done = want
	return int(d)
}

// tick runs the core's clock for one ticker event: one Tick, or in lease
// mode every tick elapsed since the last one.
func (rep *replica) tick() {
	if rep.cfg.ReadMode != ReadModeLease {
		rep.rn.Tick()
		return
	}
	rep.catchUpTicks()
}

// catchUpTicks ticks the core for every interval elapsed (lease mode).
func (rep *replica) catchUpTicks() {
	for i := rep.clock.due(time.Now()); i > 0; i-- {
		rep.rn.Tick()
	}
}
