package node

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftpipe/raftpipe/internal/vfsutil"
	"github.com/raftpipe/raftpipe/raft/kv"
	"github.com/raftpipe/raftpipe/raft/sm"
)

// The group count is part of the data layout: a key's group decides where
// its data is stored (wire.GroupOf), so a host restarted with another
// count would read every key from the wrong group. It is recorded in the
// data directory once, when the directory is created, and checked at every
// start.
const (
	// groupsFile holds the group count ("raftpipe groups 1\n<G>\n"),
	// written durably (temporary file, sync, rename, directory sync)
	// before the WAL directory exists.
	groupsFile = "GROUPS"
	// groupsFileMagic is the first line of groupsFile; the trailing number
	// is the file's format version.
	groupsFileMagic = "raftpipe groups 1"
	// engineDir is the kv.Engine of a host with more than one group, in
	// DataDir. A single-group host keeps its kv.Store in DataDir/kv.
	engineDir = "engine"
)

// ErrGroupsMismatch means the node was started with a Config.Groups other
// than the one its data directory was created with. Nothing was changed.
var ErrGroupsMismatch = errors.New("node: group count differs from the data directory's")

// checkGroups compares Config.Groups with the count recorded in the data
// directory, recording it in a new one. A directory without groupsFile
// but with a WAL predates groups and holds exactly one group; it is left
// as it is. Invariant: groupsFile is durable before the WAL directory is
// created, so a WAL without the file is always such an old directory.
func (n *Node) checkGroups() error {
	fs, dir := n.fs, n.cfg.DataDir
	name := fs.PathJoin(dir, groupsFile)
	stored, err := readGroupsFile(fs, name)
	switch {
	case err == nil:
	case oserror.IsNotExist(err):
		if _, serr := fs.Stat(fs.PathJoin(dir, "wal")); serr == nil {
			stored = 1 // created before group counts were recorded
			break
		}
		return writeGroupsFile(fs, dir, n.cfg.Groups)
	default:
		return err
	}
	if stored != n.cfg.Groups {
		return fmt.Errorf("%w: %s was created with %d group(s), the configuration asks for %d; start it with -groups %d (the count cannot change: keys would map to other groups)",
			ErrGroupsMismatch, dir, stored, n.cfg.Groups, stored)
	}
	return nil
}

// readGroupsFile parses groupsFile.
func readGroupsFile(fs vfs.FS, name string) (int, error) {
	f, err := fs.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return 0, fmt.Errorf("node: read %s: %w", name, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != groupsFileMagic {
		return 0, fmt.Errorf("node: %s is not a group-count file (want %q, then the count)", name, groupsFileMagic)
	}
	g, err := strconv.Atoi(lines[1])
	if err != nil || g < 1 || g > MaxGroups {
		return 0, fmt.Errorf("node: %s holds group count %q, want 1 to %d", name, lines[1], MaxGroups)
	}
	return g, nil
}

// writeGroupsFile records groups in dir durably: a crash leaves either no
// file (and no WAL, so the next start writes it again) or the whole file.
func writeGroupsFile(fs vfs.FS, dir string, groups int) error {
	tmp, name := fs.PathJoin(dir, groupsFile+".tmp"), fs.PathJoin(dir, groupsFile)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("node: record group count: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s\n%d\n", groupsFileMagic, groups)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		return fmt.Errorf("node: record group count: %w", err)
	}
	return vfsutil.SyncDir(fs, dir)
}

// openGroupStateMachine opens group g's state machine. With one group it
// is what it always was (Config.OpenStateMachine, or a kv.Store in
// DataDir/kv), so existing data directories open unchanged. With more, the
// default is a view of the host's one kv.Engine (opened on first use), and
// OpenStateMachine is called once per group with its own directory,
// DataDir/group-<g>.
func (n *Node) openGroupStateMachine(g uint64) (sm.StateMachine, error) {
	cfg := n.cfg
	if cfg.Groups == 1 {
		return openStateMachine(cfg, n.log)
	}
	if cfg.OpenStateMachine != nil {
		dir := n.fs.PathJoin(cfg.DataDir, fmt.Sprintf("group-%d", g))
		if err := vfsutil.MkdirAllDurable(n.fs, dir); err != nil {
			return nil, err
		}
		return cfg.OpenStateMachine(n.fs, dir)
	}
	if n.engine == nil {
		kvOpts := cfg.KV
		if kvOpts.Logger == nil {
			kvOpts.Logger = n.log
		}
		e, err := openEngine(n.fs, cfg.DataDir, kvOpts)
		if err != nil {
			return nil, err
		}
		n.engine = e
	}
	return n.engine.Group(g)
}

// engineCreatedFile, in DataDir, says the engine in engineDir was created
// completely. It is made durable after the engine's creation and before
// any group opens a view of it.
const engineCreatedFile = "engine.created"

// openEngine opens the host's kv.Engine, creating it first if
// engineCreatedFile is missing. Pebble's first open is not atomic under a
// crash: the crash-point driver (TestCrashPointsGroups) found a torn image
// whose directory kept the marker naming the manifest but lost the
// manifest itself, which no later open gets past. Without the file the
// engine directory is a creation that a crash interrupted (no group can
// have written to it: groups open views only after the file is durable),
// so it is removed and created again. (Creating it elsewhere and renaming
// it into place was tried first: the second open that needs is itself a
// non-atomic step, since every Pebble open writes a new manifest.)
func openEngine(fs vfs.FS, dataDir string, o kv.Options) (*kv.Engine, error) {
	dir, created := fs.PathJoin(dataDir, engineDir), fs.PathJoin(dataDir, engineCreatedFile)
	if _, err := fs.Stat(created); err == nil {
		return kv.OpenEngine(dir, o)
	} else if !oserror.IsNotExist(err) {
		return nil, fmt.Errorf("node: %s: %w", created, err)
	}
	if err := fs.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("node: clear an interrupted engine creation in %s: %w", dir, err)
	}
	e, err := kv.OpenEngine(dir, o)
	if err != nil {
		return nil, err
	}
	err = syncDirs(fs, fs.PathJoin(dir, "pebble"), dir)
	if err == nil {
		err = writeDurableFile(fs, dataDir, engineCreatedFile, []byte("raftpipe engine created\n"))
	}
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("node: create the engine: %w", err)
	}
	return e, nil
}

// syncDirs syncs each directory that exists.
func syncDirs(fs vfs.FS, dirs ...string) error {
	for _, d := range dirs {
		if _, err := fs.Stat(d); err != nil {
			continue
		}
		if err := vfsutil.SyncDir(fs, d); err != nil {
			return err
		}
	}
	return nil
}

// writeDurableFile writes name in dir: created, written, synced, and the
// directory synced.
func writeDurableFile(fs vfs.FS, dir, name string, data []byte) error {
	f, err := fs.Create(fs.PathJoin(dir, name), vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return vfsutil.SyncDir(fs, dir)
}

// perGroup splits a host-wide queue bound over the host's groups, with a
// floor so that a group under load still batches. Go allocates a channel's
// whole buffer when it is made, so the single-group capacities given to
// each of a thousand replicas would cost about 4 MiB per replica (the
// inbox alone is 16384 messages of about 200 bytes); split, an idle
// replica's queues stay a few KiB. With one group the bound is unchanged.
func perGroup(total, groups, floor int) int {
	if groups <= 1 {
		return total
	}
	return max(total/groups, min(floor, total))
}

// Floors of the per-replica queues with many groups (perGroup); they
// matter only beyond 128 groups (below, the split share is larger). A
// group's inbox takes a leader's append responses (about one per Ready
// from each follower) and heartbeats; 64 messages (15 KiB at 240 bytes
// each, the largest item of an idle replica) cover 32 loop turns of two
// followers, and an overflow is only a dropped message. Proposals and
// reads arrive in batches of a loop turn; 256 is more than one turn
// collects with a few hundred clients spread over that many groups.
const (
	minGroupInboxMsgs  = 64
	minGroupProposals  = 256
	minGroupReads      = 256
	minGroupApplyTasks = 32
)

// installFileName is the name, in DataDir, of group g's snapshot install
// file. Group 0 keeps the single group's name, so existing data
// directories finish an interrupted install as before.
func installFileName(g uint64) string {
	if g == 0 {
		return installFile
	}
	return fmt.Sprintf("snapshot-%d.install", g)
}
