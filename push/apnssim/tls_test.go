package apnssim

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSHostsInGeneratedCertificate(t *testing.T) {
	dir := t.TempDir()
	sim, err := New(Config{TLSDir: dir, TLSHosts: []string{"apns-sim", "10.9.8.7"}})
	if err != nil {
		t.Fatal(err)
	}
	sim.Close()
	b, err := os.ReadFile(filepath.Join(dir, CertFileName))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"apns-sim", "10.9.8.7", "localhost", "127.0.0.1"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not cover %s: %v", h, err)
		}
	}

	// Reusing the directory for a host its certificate lacks must fail
	// with what to do, not serve a certificate clients will reject.
	_, err = New(Config{TLSDir: dir, TLSHosts: []string{"elsewhere.example"}})
	if err == nil || !strings.Contains(err.Error(), `does not cover "elsewhere.example"`) || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("New with an uncovered host: err = %v, want one naming the host and the fix", err)
	}
}

func TestEnsureDevKey(t *testing.T) {
	dir := t.TempDir()
	path, err := EnsureDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadTrustKey(path); err != nil {
		t.Fatalf("the development key does not load as a trust key: %v", err)
	}
	again, err := EnsureDevKey(dir)
	if err != nil || again != path {
		t.Fatalf("second EnsureDevKey = %q, %v; want %q", again, err, path)
	}
	second, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Fatal("EnsureDevKey replaced an existing key")
	}
}
