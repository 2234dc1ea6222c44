// Package promsessions exports a sessions.Manager's metrics to Prometheus.
//
// Counters and gauges are read from Manager.Stats at scrape time; storage
// call latencies and write-behind flush sizes come from an Observer that
// the Manager reports to. Give each Manager its own Observer:
//
//	obs := promsessions.NewObserver()
//	m, err := sessions.New(sessions.Config{Storage: url, Observer: obs})
//	...
//	prometheus.MustRegister(promsessions.New(m))
//
// New finds the Observer in the Manager's Config itself, so it cannot be
// paired with another Manager's. Without one (Config.Observer nil), the
// collector exports everything but the two histograms and the per-op error
// counter. docs/operations.md lists the metrics, with alert queries.
package promsessions

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/adapter"
)

// Observer records a Manager's storage call latencies, storage call
// errors by operation and write-behind flush sizes. Make one per Manager
// with NewObserver and set it as sessions.Config.Observer.
type Observer struct {
	calls    *prometheus.HistogramVec
	errs     *prometheus.CounterVec
	flush    prometheus.Histogram
	byOp     map[string]prometheus.Observer // the ops' series, prepared
	errsByOp map[string]prometheus.Counter
	used     atomic.Bool // a collector exports it
}

var _ sessions.Observer = (*Observer)(nil)

// LatencyBuckets are the storage call latency histogram's buckets, in
// seconds: from 100 µs (a Redis round trip on one host) to 2.5 s (beyond
// the default StorageTimeout of 2 s).
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// FlushBuckets are the flush size histogram's buckets: 1 to 16384
// operations, doubling.
var FlushBuckets = prometheus.ExponentialBuckets(1, 2, 15)

// NewObserver returns an Observer for one Manager's Config.
func NewObserver() *Observer {
	o := &Observer{
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessions_storage_call_duration_seconds",
			Help:    "Duration of storage calls by operation (a missing entry is a success).",
			Buckets: LatencyBuckets,
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessions_storage_call_errors_total",
			Help: "Storage calls that failed, by operation.",
		}, []string{"op"}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessions_write_behind_flush_size",
			Help:    "Operations (writes and deletes) taken from the write-behind queue per flush.",
			Buckets: FlushBuckets,
		}),
		byOp:     make(map[string]prometheus.Observer, len(adapter.Ops)),
		errsByOp: make(map[string]prometheus.Counter, len(adapter.Ops)),
	}
	for _, op := range adapter.Ops {
		o.byOp[op] = o.calls.WithLabelValues(op)
		o.errsByOp[op] = o.errs.WithLabelValues(op)
	}
	return o
}

// StorageCall implements sessions.Observer.
func (o *Observer) StorageCall(op string, took time.Duration, err error) {
	h, ok := o.byOp[op]
	if !ok {
		h = o.calls.WithLabelValues(op)
	}
	h.Observe(took.Seconds())
	if err != nil {
		if c, ok := o.errsByOp[op]; ok {
			c.Inc()
		} else {
			o.errs.WithLabelValues(op).Inc()
		}
	}
}

// FlushBatch implements sessions.Observer.
func (o *Observer) FlushBatch(size, failed int) { o.flush.Observe(float64(size)) }

// Option configures New.
type Option func(*collector)

// ConstLabels adds labels to every metric, to tell apart Managers of one
// process that share a mode and a storage (an "app" label, say). The
// labels mode and storage are always set.
func ConstLabels(l prometheus.Labels) Option {
	return func(c *collector) {
		for k, v := range l {
			c.labels[k] = v
		}
	}
}

// New returns a collector of m's metrics, labelled with its mode and
// storage. It panics if m's Observer (Config.Observer) is already exported
// by another collector: each Manager needs its own NewObserver.
func New(m *sessions.Manager, opts ...Option) prometheus.Collector {
	info := m.Info()
	c := &collector{m: m, labels: prometheus.Labels{}}
	for _, opt := range opts {
		opt(c)
	}
	c.labels["mode"], c.labels["storage"] = info.Mode, info.Storage
	if o, ok := info.Observer.(*Observer); ok {
		if o.used.Swap(true) {
			panic(errors.New("promsessions: this Observer is exported already: give each Manager its own NewObserver, and call New once per Manager"))
		}
		c.obs = o
		c.obsReg = prometheus.WrapCollectorWith(c.labels, observerCollector{o})
	}
	c.windowSeconds = info.WriteBehind.Seconds()
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, c.labels)
	}
	c.resident = d("sessions_resident", "Sessions held in memory.")
	c.pending = d("sessions_write_behind_pending", "Write-behind operations queued or being written, not yet acknowledged by storage (sticky mode).")
	c.lag = d("sessions_write_behind_lag_seconds", "Age of the oldest change not yet acknowledged by storage: what a crash would lose now (sticky mode).")
	c.window = d("sessions_write_behind_window_seconds", "Config.WriteBehind: how long changes are coalesced before a flush.")
	c.requests = d("sessions_requests_total", "Requests by how their session was found: memory, storage, new (none), error.", "outcome")
	c.created = d("sessions_created_total", "Sessions started.")
	c.ended = d("sessions_ended_total", "Sessions ended, by reason (timeout, invalidated).", "reason")
	c.evicted = d("sessions_evicted_total", "Sessions dropped from memory for idleness (they stay in storage).")
	c.reads = d("sessions_storage_reads_total", "Sessions read from storage.")
	c.writes = d("sessions_storage_writes_total", "Session writes acknowledged by storage.")
	c.deletes = d("sessions_storage_deletes_total", "Session deletes acknowledged by storage.")
	c.errors = d("sessions_storage_errors_total", "Storage failures the Manager reported (each failed read, write, delete or listing).")
	c.retries = d("sessions_write_behind_retries_total", "Write-behind operations queued again after a failure, to be retried with backoff.")
	c.conflicts = d("sessions_conflicts_total", "Compare-and-swap conflicts: writes that had to merge another server's version and retry.")
	c.giveUps = d("sessions_conflict_give_ups_total", "Commits and Updates that gave up with ErrConflict after repeated conflicts.")
	c.decode = d("sessions_decode_failures_total", "Stored entries that could not be read as a session, by cause (sealed, format, codec); each entry counted once.", "cause")
	c.claims = d("sessions_end_claims_total", "Claims of timed-out sessions' ends, by outcome: won (OnSessionEnd fired here) or lost (another server won).", "outcome")
	c.repersisted = d("sessions_repersisted_total", "Sessions queued to be written again after storage failed and recovered (sticky mode).")
	return c
}

type collector struct {
	m             *sessions.Manager
	labels        prometheus.Labels
	obs           *Observer
	obsReg        prometheus.Collector
	windowSeconds float64

	resident, pending, lag, window                  *prometheus.Desc
	requests, created, ended, evicted               *prometheus.Desc
	reads, writes, deletes, errors, retries         *prometheus.Desc
	conflicts, giveUps, decode, claims, repersisted *prometheus.Desc
}

func (c *collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.resident, c.pending, c.lag, c.window, c.requests, c.created, c.ended, c.evicted,
		c.reads, c.writes, c.deletes, c.errors, c.retries, c.conflicts, c.giveUps, c.decode, c.claims, c.repersisted}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
	if c.obsReg != nil {
		c.obsReg.Describe(ch)
	}
}

// Collect implements prometheus.Collector: one Stats call per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	count := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.resident, float64(s.Resident))
	gauge(c.pending, float64(s.PendingWrites))
	gauge(c.lag, s.WriteBehindLag.Seconds())
	gauge(c.window, c.windowSeconds)
	count(c.requests, s.RequestsMemory, "memory")
	count(c.requests, s.RequestsStorage, "storage")
	count(c.requests, s.RequestsNew, "new")
	count(c.requests, s.RequestsFailed, "error")
	count(c.created, s.Created)
	count(c.ended, s.EndedTimeout, "timeout")
	count(c.ended, s.EndedInvalidated, "invalidated")
	count(c.evicted, s.Evicted)
	count(c.reads, s.StorageReads)
	count(c.writes, s.StorageWrites)
	count(c.deletes, s.StorageDeletes)
	count(c.errors, s.StorageErrors)
	count(c.retries, s.WriteBehindRetries)
	count(c.conflicts, s.Conflicts)
	count(c.giveUps, s.ConflictGiveUps)
	count(c.decode, s.CorruptSealed, "sealed")
	count(c.decode, s.CorruptFormat, "format")
	count(c.decode, s.CorruptCodec, "codec")
	count(c.claims, s.EndClaimsWon, "won")
	count(c.claims, s.EndClaimsLost, "lost")
	count(c.repersisted, s.Repersisted)
	if c.obsReg != nil {
		c.obsReg.Collect(ch)
	}
}

// observerCollector collects an Observer's metrics.
type observerCollector struct{ o *Observer }

func (oc observerCollector) Describe(ch chan<- *prometheus.Desc) {
	oc.o.calls.Describe(ch)
	oc.o.errs.Describe(ch)
	oc.o.flush.Describe(ch)
}

func (oc observerCollector) Collect(ch chan<- prometheus.Metric) {
	oc.o.calls.Collect(ch)
	oc.o.errs.Collect(ch)
	oc.o.flush.Collect(ch)
}
