package journal

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const killChildEnv = "KPUSH_JOURNAL_KILL_CHILD"

// TestSIGKILLLosesNothingAcknowledged runs a writer in a re-executed copy
// of the test binary (small segments, so it rolls, drops and compacts all
// the time), SIGKILLs it mid-stream, and checks the reopened journal holds
// every item whose commit was acknowledged and none whose removal was.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	for round := 0; round < 2; round++ {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLLosesNothingAcknowledged$", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with this test
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		live := map[uint64]string{}
		gone := map[uint64]bool{}
		removing := map[uint64]bool{} // removal issued; unknown whether it reached the disk
		sc := bufio.NewScanner(out)
		acks := 0
		stopAt := 300 + round*300
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			id, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "add":
				live[id] = f[2]
				acks++
			case "removing":
				removing[id] = true
			case "rm":
				delete(live, id)
				gone[id] = true
			}
			if acks >= stopAt && !killed {
				// Kill mid-stream; the lines already in the pipe are still
				// read, so every acknowledgement made before death counts.
				cmd.Process.Kill()
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("child stopped after %d acknowledgements", acks)
		}
		// A kill can leave what Open repairs, and says so: a compaction
		// finished but its old segments not yet deleted, a segment or a
		// tail torn mid-write.
		j := openT(t, dir, Options{SegmentSize: 4096, Logger: strictLogger(t,
			"removing journal segment superseded by a compacted one",
			"removing journal segment torn while being created",
			"truncating torn journal tail")})
		got := map[uint64]string{}
		var last uint64
		for _, it := range readAll(t, j) {
			if it.ID <= last {
				t.Fatalf("id %d after %d", it.ID, last)
			}
			last = it.ID
			got[it.ID] = string(it.Data)
		}
		st := j.Stats()
		j.Close()
		for id, data := range live {
			if got[id] != data && !(got[id] == "" && removing[id]) {
				for _, f := range segFiles(t, dir) {
					var ids []string
					DumpFile(f, func(e DumpEntry) error {
						ids = append(ids, fmt.Sprintf("%s:%d%v", e.Op, e.ID, e.Ranges))
						return nil
					})
					t.Logf("%s: %v", f, ids)
				}
				t.Fatalf("round %d: acknowledged item %d lost (got %q); stats %+v", round, id, got[id], st)
			}
		}
		for id := range got {
			if gone[id] {
				t.Fatalf("round %d: item %d came back after an acknowledged removal", round, id)
			}
		}
		t.Logf("round %d: killed after %d acks; %d live acknowledged, %d after reopen, %d segments on disk (%d bytes)",
			round, acks, len(live), len(got), len(segFiles(t, dir)), st.DiskBytes)
	}
}

func killChild(dir string) {
	j, err := Open(dir, "q", Options{SegmentSize: 4096, Logger: quietLogger()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	var keep []uint64
	for i := 0; ; i++ {
		data := fmt.Sprintf("v%d-%s", i, strings.Repeat("z", i%50))
		items := []Item{{Data: []byte(data)}}
		c, err := j.Append(items)
		if err == nil {
			err = c.Wait()
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Fprintf(w, "add %d %s\n", items[0].ID, data)
		w.Flush()
		// Remove most items at once, keep every 7th for a while (a slow
		// head that pins old segments and forces compactions).
		rm := []uint64{items[0].ID}
		if i%7 == 0 {
			keep = append(keep, items[0].ID)
			rm = nil
			if len(keep) > 20 {
				rm, keep = keep[:10], keep[10:]
			}
		}
		if len(rm) > 0 {
			for _, id := range rm {
				fmt.Fprintf(w, "removing %d\n", id)
			}
			w.Flush()
			c, err := j.Remove(rm...)
			if err == nil {
				err = c.Wait()
			}
			if err != nil {
				fmt.Println("error", err)
				os.Exit(2)
			}
			for _, id := range rm {
				fmt.Fprintf(w, "rm %d\n", id)
			}
			w.Flush()
		}
	}
}
