// A test hook for power-loss tests (queued's TestPowerLoss): it records,
// at each fsync, how many bytes of a segment file that fsync made durable.

package journal

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncedLogEnv names the environment variable that turns the hook on.
// When it names a file, every fsync of a segment appends one line
// "<segment file name> <bytes>\n" to that file (one write(2), so a SIGKILL
// never leaves half a line), before any caller learns of the fsync. A
// test kills the process, truncates every segment to the last length
// logged for it (removing a segment with none), and restarts: the journal
// is then what a power cut would have left. Unset, the hook costs one nil
// check per fsync.
const SyncedLogEnv = "KPUSH_TEST_SYNCED_LOG"

var syncedLog = openSyncedLog(os.Getenv(SyncedLogEnv))

func openSyncedLog(path string) *os.File {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		panic(fmt.Sprintf("%s=%s: %v", SyncedLogEnv, path, err))
	}
	return f
}

// noteSynced logs that the first size bytes of the file at path are
// durable (see SyncedLogEnv).
func noteSynced(path string, size int64) {
	if syncedLog != nil {
		fmt.Fprintf(syncedLog, "%s %d\n", filepath.Base(path), size)
	}
}
