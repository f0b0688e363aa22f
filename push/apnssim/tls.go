package apnssim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kpush/kpush/internal/simkit"
)

// Files kept in the TLS directory.
const (
	CAFileName   = simkit.CAFileName
	CertFileName = simkit.CertFileName
	KeyFileName  = simkit.KeyFileName
)

// The development signing key: kpush apns-sim writes it into its TLS
// directory so a client with no Apple key (kpush up, a worker in
// docker-compose) can still sign provider tokens, and the simulator's token
// checks run as they would at Apple. The ids are made up, 10 characters like
// Apple's.
const (
	DevKeyFileName = "dev-key.p8"
	DevKeyID       = "KPUSHSIM01"
	DevTeamID      = "KPUSHDEV01"
)

// EnsureDevKey returns the path of dir's development signing key (an ES256
// .p8 file), creating it when absent.
func EnsureDevKey(dir string) (string, error) {
	path := filepath.Join(dir, DevKeyFileName)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("simulator development key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("simulator development key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	// 0644: the key signs tokens for the simulator only, and a worker in
	// another container (another uid) must read it from the shared volume.
	if err := simkit.WritePEM(path, "PRIVATE KEY", der, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// loadTrustKey reads the public key that verifies provider-token
// signatures: Apple's .p8 private key (PKCS#8), or a PEM public key.
func loadTrustKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trust key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("trust key %s: not PEM (want the .p8 auth key or its public key)", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("trust key %s: %w", path, err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return &k.PublicKey, nil
	case *ecdsa.PublicKey:
		return k, nil
	default:
		return nil, fmt.Errorf("trust key %s: not an EC key (APNs uses ES256)", path)
	}
}

func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("client CA %s holds no PEM certificate", path)
	}
	return pool, nil
}
