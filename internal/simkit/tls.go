// Package simkit holds what kpush's two push-service simulators (APNs and
// FCM) share: their TLS files, atomic PEM writes and a per-token rate
// limiter. Standard library only.
package simkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kpush/kpush/internal/fsync"
)

// Files kept in a simulator's TLS directory; clients trust CAFileName.
const (
	CAFileName   = "ca.pem"
	CertFileName = "cert.pem"
	KeyFileName  = "key.pem"
)

// LoadOrCreateTLS returns the server certificate from dir, creating a small
// CA and a server certificate for 127.0.0.1, ::1, localhost and the extra
// hosts when none of the three files exist. A directory holding only some of
// them is an error: regenerating would silently invalidate the ca.pem clients
// already trust. So is a reused certificate that does not cover one of the
// extra hosts, since clients reaching it by that name would fail TLS.
func LoadOrCreateTLS(dir, name string, hosts []string) (tls.Certificate, *x509.CertPool, bool, error) {
	caPath := filepath.Join(dir, CAFileName)
	certPath := filepath.Join(dir, CertFileName)
	keyPath := filepath.Join(dir, KeyFileName)
	present := 0
	for _, p := range []string{caPath, certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			present++
		} else if !errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, nil, false, fmt.Errorf("stat %s: %w", p, err)
		}
	}
	created := false
	switch present {
	case 0:
		if err := createTLS(dir, name, caPath, certPath, keyPath, hosts); err != nil {
			return tls.Certificate{}, nil, false, err
		}
		created = true
	case 3:
	default:
		return tls.Certificate{}, nil, false, fmt.Errorf("TLS directory %s holds only some of %s, %s, %s: remove them all to regenerate", dir, CAFileName, CertFileName, KeyFileName)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("load simulator certificate from %s: %w", dir, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("parse simulator certificate in %s: %w", dir, err)
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return tls.Certificate{}, nil, false, fmt.Errorf("simulator certificate in %s does not cover %q: remove %s, %s and %s to regenerate them", dir, h, CAFileName, CertFileName, KeyFileName)
		}
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("read %s: %w", caPath, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, false, fmt.Errorf("%s holds no PEM certificate", caPath)
	}
	return cert, pool, created, nil
}

func createTLS(dir, name, caPath, certPath, keyPath string, hosts []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name + " CA", Organization: []string{"kpush"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create simulator CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"kpush"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create simulator certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	// Key first, CA last: a crash midway leaves a partial set that the
	// next start reports instead of half-trusting.
	if err := WritePEM(keyPath, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	if err := WritePEM(certPath, "CERTIFICATE", srvDER, 0o644); err != nil {
		return err
	}
	return WritePEM(caPath, "CERTIFICATE", caDER, 0o644)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// WritePEM writes a PEM file atomically (fsync.WriteFile).
func WritePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := fsync.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
