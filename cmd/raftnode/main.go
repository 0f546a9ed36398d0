package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is the release name, set at link time with
// -ldflags "-X main.version=v1.2.3"; the VCS revision is added from the
// build info when the binary was built from a checkout.
var version = "dev"

// Exit statuses.
const (
	// exitOK is a clean exit, including after SIGTERM.
	exitOK = 0
	// exitFailure is a runtime failure: the node could not start, failed,
	// or an admin command failed.
	exitFailure = 1
	// exitUsage is a usage or configuration error: nothing was started.
	exitUsage = 2
	// exitRemoved means the node stopped because it was removed from the
	// cluster (it applied its removal, or a member told it): restarting
	// it with the same data dir will not make it a member again.
	exitRemoved = 3
)

func main() {
	notify := func() <-chan os.Signal {
		// Room for two: the first starts a clean shutdown, a second one
		// during it aborts the shutdown.
		c := make(chan os.Signal, 2)
		signal.Notify(c, syscall.SIGTERM, os.Interrupt)
		return c
	}
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr, notify))
}

// realMain dispatches the subcommand and returns the exit status. notify
// subscribes to shutdown signals; only the run subcommand calls it, so the
// admin and version subcommands keep the default signal behaviour.
func realMain(args []string, stdout, stderr io.Writer, notify func() <-chan os.Signal) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCommand(args, stderr, notify)
	case "admin":
		return adminCommand(args, stdout, stderr)
	case "kv":
		return kvCommand(args, os.Stdin, stdout, stderr)
	case "restore":
		return restoreCommand(args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "raftnode version: unexpected argument %q\n", args[0])
			return exitUsage
		}
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help":
		printUsage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "raftnode: unknown subcommand %q\n\n", cmd)
		printUsage(stderr)
		return exitUsage
	}
}

// printUsage lists the subcommands.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  raftnode [run] [flags]                     run a node (see raftnode run -help)
  raftnode admin -addr HOST:PORT COMMAND     administer a running node (see raftnode admin -help)
  raftnode kv -cluster-id N COMMAND ARGS     put, get, del or cas a key (see raftnode kv -help)
  raftnode restore -from FILE -data-dir DIR  seed the first node of a new cluster from a backup (see raftnode restore -help)
  raftnode version                           print the version
`)
}

// versionString is the version, VCS revision and Go version of this build.
func versionString() string {
	s := "raftnode " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					modified = "+dirty"
				}
			}
		}
		if rev != "" {
			s += " (" + rev + modified + ")"
		}
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
