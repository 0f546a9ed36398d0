// Package check tests the monitoring files shipped in docs/monitoring:
// the Prometheus alerting rules parse with Prometheus' own rule parser, and
// every metric that the rules and the Grafana dashboard name is one a live
// raftpipe node exposes (a real 3-node cluster on 127.0.0.1 is started and
// scraped). The exposition is also linted with promlint.
//
// It is its own module so that github.com/prometheus/prometheus, which
// the check needs for rulefmt and the PromQL parser, stays out of the main
// module's dependencies. `make test` runs it; it needs only the module
// cache once `go mod download` has filled it.
package check
