package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/raftpipe/raftpipe/raft/node"
)

// Shutdown bounds. Each keeps a stuck component from hanging the process
// forever; systemd's TimeoutStopSec should exceed their sum.
const (
	// stopTimeout bounds what follows the drain (admin server, node stop);
	// the whole shutdown is bounded by -drain-timeout + stopTimeout, past
	// which the process exits 1.
	stopTimeout = 20 * time.Second
	// adminDrainTimeout bounds waiting for in-flight admin requests; they
	// are cut off after it.
	adminDrainTimeout = 5 * time.Second
	// adminReadHeaderTimeout bounds a slow admin client's request headers.
	adminReadHeaderTimeout = 10 * time.Second
)

// runCommand is the run subcommand: parse and validate, then run the node
// until a signal or a fatal error.
func runCommand(args []string, stderr io.Writer, notify func() <-chan os.Signal) int {
	o, err := parseRunArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftnode: %v\n", err)
		return exitUsage
	}
	return runNode(o, newLogger(stderr, o.logLevel, o.logFormat), notify())
}

// newLogger builds the process logger: slog to w in text or JSON.
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runNode starts the node and its admin server and blocks until a signal
// (clean shutdown, exit 0) or a failure (exit 1).
func runNode(o *runOptions, logger *slog.Logger, sigc <-chan os.Signal) int {
	logger.Info("starting raftnode", "version", versionString(), "id", o.id, "cluster_id", o.clusterID,
		"data_dir", o.dataDir, "has_state", hasState(o.dataDir), "bootstrap", o.bootstrap,
		"members", formatMembers(o.members), "tls", o.tlsConfig != nil, "admin_auth", o.adminAuthMode())
	n, err := node.Start(o.nodeConfig(logger))
	if err != nil {
		logger.Error("node failed to start", "err", err)
		return exitFailure
	}
	var admin *http.Server
	adminErr := make(chan error, 1)
	adminBound := ""
	if o.adminAddr != "" {
		ln, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			logger.Error("admin listener failed", "addr", o.adminAddr, "err", err)
			stopNode(n, logger)
			return exitFailure
		}
		adminBound = ln.Addr().String()
		if o.tlsConfig != nil {
			ln = tls.NewListener(ln, node.AdminTLSConfig(o.tlsConfig))
		}
		admin = &http.Server{
			Handler:           n.AdminHandlerWith(o.adminAuth()),
			ReadHeaderTimeout: adminReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		go func() { adminErr <- admin.Serve(ln) }()
	}
	logger.Info("raftnode ready", "peer", n.PeerAddr(), "client", n.ClientAddr(), "admin", adminBound,
		"advertise_peer", o.advertisePeer, "advertise_client", o.advertiseClient)

	select {
	case sig := <-sigc:
		logger.Info("signal received, shutting down", "signal", sig.String())
		return shutdown(n, admin, o, logger, sigc, exitOK, true)
	case <-n.Done():
		err := n.Err()
		if errors.Is(err, node.ErrRemoved) {
			logger.Warn("this node was removed from the cluster; exiting", "exit_status", exitRemoved)
			if shutdown(n, admin, o, logger, sigc, exitRemoved, false) == exitRemoved {
				return exitRemoved
			}
			return exitFailure
		}
		if err == nil {
			err = errors.New("node stopped without a fatal error being recorded")
		}
		logger.Error("node failed", "err", err)
		shutdown(n, admin, o, logger, sigc, exitFailure, false)
		return exitFailure
	case err := <-adminErr:
		logger.Error("admin server failed", "err", err)
		shutdown(n, admin, o, logger, sigc, exitFailure, false)
		return exitFailure
	}
}

// shutdown drains the node (node.Drain, bounded by -drain-timeout: no new
// requests, in-flight ones answered, leadership handed off), drains the
// admin server and stops the node, all bounded by -drain-timeout +
// stopTimeout; a second signal aborts it. It returns code if the node
// stopped cleanly (a drain cut short by its bound is logged, not fatal:
// requests still in flight then get an unknown outcome), else exitFailure.
// signaled says a signal started the shutdown; if not (the node stopped on
// its own, e.g. removed), the first signal that arrives meanwhile asks for
// what is already under way and is only logged.
func shutdown(n *node.Node, admin *http.Server, o *runOptions, logger *slog.Logger, sigc <-chan os.Signal, code int, signaled bool) int {
	done := make(chan int, 1)
	go func() {
		select {
		case <-n.Done():
		default:
			ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
			if err := n.Drain(ctx); err != nil {
				logger.Warn("drain did not finish; stopping anyway", "timeout", o.drainTimeout, "err", err)
			} else {
				logger.Info("drained: in-flight requests answered, leadership handed off if held", "leader", n.Leader())
			}
			cancel()
		}
		if admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), adminDrainTimeout)
			if err := admin.Shutdown(ctx); err != nil {
				logger.Warn("admin requests cut off at shutdown", "err", err)
				admin.Close()
			}
			cancel()
		}
		if err := stopNode(n, logger); err != nil {
			done <- exitFailure
			return
		}
		done <- code
	}()
	bound := o.drainTimeout + stopTimeout
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case c := <-done:
			if c == exitOK || c == exitRemoved {
				logger.Info("shutdown complete", "exit_status", c)
			}
			return c
		case sig := <-sigc:
			if !signaled {
				signaled = true
				logger.Info("signal received during shutdown; already shutting down", "signal", sig.String())
				continue
			}
			logger.Error("second signal during shutdown, exiting at once", "signal", sig.String())
			return exitFailure
		case <-timer.C:
			logger.Error("shutdown did not finish in time, exiting", "timeout", bound)
			return exitFailure
		}
	}
}

// stopNode stops the node (closing its ports, WAL and store) and logs the
// outcome.
func stopNode(n *node.Node, logger *slog.Logger) error {
	if err := n.Stop(); err != nil {
		logger.Error("node stop reported an error", "err", err)
		return err
	}
	return nil
}
