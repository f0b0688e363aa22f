// Package testfcm holds what tests of the FCM sender and simulator share.
package testfcm

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kpush/kpush/push/fcmsim"
)

// SharedKeyDir returns a fresh directory holding a copy of one
// service-account.json per test binary, for fcmsim.Config.TLSDir:
// generating its 2048-bit RSA key is most of a simulator's start-up. A
// test that needs an account of its own (another key) passes its own
// TLSDir.
func SharedKeyDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	shared.once.Do(func() {
		if _, err := fcmsim.New(fcmsim.Config{TLSDir: dir, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			shared.err = err
			return
		}
		shared.file, shared.err = os.ReadFile(filepath.Join(dir, fcmsim.ServiceAccountFileName))
	})
	if shared.err != nil {
		t.Fatalf("generate the shared service account: %v", shared.err)
	}
	if err := os.WriteFile(filepath.Join(dir, fcmsim.ServiceAccountFileName), shared.file, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

var shared struct {
	once sync.Once
	file []byte
	err  error
}
