// Command fsynclat measures the write+fdatasync latency of the disk under
// a directory, as a WAL sees it, for results/machine.md:
//
//	go run ./bench/fsynclat -dir /var/tmp -n 1000
//
// It prints one summary line, or one JSON object with -json.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/raftpipe/raftpipe/bench"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	n := flag.Int("n", 1000, "number of write+fdatasync pairs to time")
	size := flag.Int("bytes", 4096, "bytes written before each fdatasync")
	asJSON := flag.Bool("json", false, "print the result as one JSON object")
	flag.Parse()
	res, err := bench.MeasureFdatasync(*dir, *n, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsynclat:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return
	}
	fmt.Println(res)
}
