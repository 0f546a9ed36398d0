// Command raftnode is the raftpipe daemon: one member of a replicated
// key-value cluster, run one per host.
//
// Read this first, then docs/deploy.md for running a real cluster.
//
// Subcommands:
//
//	raftnode [run] [flags]          run a node (the default when no subcommand is given)
//	raftnode admin -addr H:P CMD    talk to a node's admin HTTP port (status, add, add-learner, remove, transfer, snapshot save)
//	raftnode kv -cluster-id N CMD   put, get, del or cas one key through the client port (see kvcmd.go)
//	raftnode restore -from FILE ... seed the first node of a new cluster from a backup (admin snapshot save)
//	raftnode version                print the build version
//
// # Configuration
//
// Every setting is a flag (see `raftnode run -help`, which gives units and
// defaults). The same settings may also come from a file named by -config,
// one `key = value` per line using the flag names without the dash, with
// `#` starting a comment. A flag on the command line overrides the file; a
// key the daemon does not know is an error naming the file and line, so a
// typo never silently falls back to a default. All settings are validated
// before anything is opened; a usage or configuration error exits with
// status 2.
//
// # Lifecycle
//
// A brand-new cluster starts with -bootstrap on every initial node, all
// given the same -members list. A node added later starts without
// -bootstrap (with -members naming the existing cluster) and waits until an
// operator runs `raftnode admin add` against the leader. A node with state
// in -data-dir ignores -bootstrap and -members addresses it already knows.
//
// SIGTERM or SIGINT shuts the node down cleanly: a leader first tries to
// hand leadership to a follower (bounded by one election timeout), then the
// admin server stops accepting requests, the node stops (client and peer
// ports close, the WAL and the Pebble store are closed) and the process
// exits 0. A second signal during shutdown exits 1 at once. A fatal node
// error (a failed WAL write or fsync) is logged and exits 1.
//
// Exit statuses: 0 clean exit, 1 runtime failure, 2 usage or configuration
// error. The kv subcommand refines them for scripts: 0 done, 1 key not
// found or CAS comparison failed, 2 usage error, 3 outcome unknown (a
// write was sent and not answered), 4 any other failure (not applied).
//
// # Files
//
//   - main.go: subcommand dispatch and exit statuses.
//   - flags.go: the run flags, the config file, validation, node.Config.
//   - members.go: the -members syntax and address checks.
//   - run.go: the run subcommand: logging, admin server, signals, shutdown.
//   - admin.go: the admin subcommand (an HTTP client of the admin port,
//     with a bearer token or a TLS client certificate).
//   - adminauth.go: the run flags that decide who may use the admin port.
//   - backup.go: the backup file format; admin snapshot save writes it.
//   - restore.go: the restore subcommand (verifies a backup, node.SeedFromSnapshot).
//   - kvcmd.go: the kv subcommand (a raft/client user), its output and exit statuses.
package main
