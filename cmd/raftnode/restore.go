package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/raftpipe/raftpipe/raft/node"
)

// restoreUsage is the restore subcommand's help.
const restoreUsage = `Usage: raftnode restore -from FILE -data-dir DIR -id N -cluster-id N -members N=PEER/CLIENT

Seeds DIR, which must be empty or missing, as the first node of a NEW
cluster from a backup taken with 'raftnode admin snapshot save'. The new
cluster's membership is -members, which lists this node alone; the
backup's membership is not used. Then start the node with raftnode run
(the same -id, -cluster-id, -data-dir and -members, without -bootstrap):
it elects itself, and the other nodes are added with raftnode admin
add-learner and add.

The whole file is verified (SHA-256) before anything is written.

Exit status: 0 restored; 1 the backup is damaged or restoring failed
(nothing is left in DIR); 2 usage error, including a DIR that already
holds anything.

Flags:
`

// restoreCommand runs `raftnode restore ...` and returns the exit status.
func restoreCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("raftnode restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "backup `FILE` written by raftnode admin snapshot save (required)")
	dataDir := fs.String("data-dir", "", "the new node's data `DIR`: must be empty or missing (required)")
	id := fs.Uint64("id", 0, "the new node's Raft ID `N` (required)")
	clusterID := fs.Uint64("cluster-id", 0, "the new cluster's ID `N`, for raftnode run (required)")
	membersRaw := fs.String("members", "", "this node alone, as `ID=PEERHOST:PORT/CLIENTHOST:PORT` (required)")
	logFormat := fs.String("log-format", "text", "log `FORMAT` on stderr: text or json")
	fs.Usage = func() {
		fmt.Fprint(stderr, restoreUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftnode restore: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *from == "":
		return usage("-from is required")
	case *dataDir == "":
		return usage("-data-dir is required")
	case *id == 0:
		return usage("-id is required and must be non-zero")
	case *clusterID == 0:
		return usage("-cluster-id is required and must be non-zero")
	case *logFormat != "text" && *logFormat != "json":
		return usage("-log-format %q: want text or json", *logFormat)
	}
	members, err := parseMembers(*membersRaw)
	if err != nil {
		return usage("-members: %v", err)
	}
	if len(members) != 1 || members[0].ID != *id {
		return usage("-members must list this node (-id %d) and nothing else: the restored cluster starts with it alone; add the others with raftnode admin add-learner and add once it runs", *id)
	}
	if names, err := os.ReadDir(*dataDir); err == nil && len(names) > 0 {
		return usage("refusing to restore into %s: it already holds %d entries (e.g. %s); restore only seeds an empty or missing directory", *dataDir, len(names), names[0].Name())
	} else if err != nil && !os.IsNotExist(err) {
		return usage("-data-dir: %v", err)
	}

	f, err := os.Open(*from)
	if err != nil {
		return usage("-from: %v", err)
	}
	defer f.Close()
	archive, info, err := verifyBackup(f)
	if err != nil {
		fmt.Fprintf(stderr, "raftnode restore: %s: %v; nothing was written\n", *from, err)
		return exitFailure
	}
	logger := newLogger(stderr, 0, *logFormat)
	cfg := node.Config{
		ID:         *id,
		ClusterID:  *clusterID,
		DataDir:    *dataDir,
		PeerAddr:   members[0].PeerAddr,
		ClientAddr: members[0].ClientAddr,
		Members:    members,
		Logger:     logger,
	}
	seed, err := node.SeedFromSnapshot(cfg, archive)
	if errors.Is(err, node.ErrDataDirNotEmpty) {
		return usage("%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftnode restore: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "restored %s (index %d, term %d) into %s as node %d of a new one-node cluster; its log continues after index %d\n",
		*from, info.Index, info.Term, *dataDir, *id, seed.Index)
	fmt.Fprintf(stdout, "next: raftnode run -id %d -cluster-id %d -data-dir %s -members %s (no -bootstrap), then add the other nodes with raftnode admin add-learner and add\n",
		*id, *clusterID, *dataDir, formatMembers(members))
	return exitOK
}
