package push_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
)

// clientPKI writes a CA (ca.pem) and a client certificate for topic signed
// by it, with its key, in one PEM file (client.pem), as Apple's exported
// push certificates are.
func clientPKI(t *testing.T, dir, topic string) (caFile, clientFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test push CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: topic},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "client-ca.pem")
	clientFile = filepath.Join(dir, "client.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	both := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(clientFile, both, 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, clientFile
}

func TestCertificateAuth(t *testing.T) {
	dir := t.TempDir()
	caFile, clientFile := clientPKI(t, dir, "com.example.app")
	_, strangerFile := clientPKI(t, t.TempDir(), "com.example.app")
	sim := startSim(t, apnssim.Config{ClientCAFile: caFile})
	newCertSender := func(certFile string) *push.Sender {
		s, err := push.NewSender(push.Config{Host: sim.URL(), CAFile: sim.CAFile(), CertFile: certFile, Connections: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}

	t.Run("trusted certificate", func(t *testing.T) {
		s := newCertSender(clientFile)
		m := alertMessage(token(1))
		if res := s.Send(context.Background(), m, token(1)); !res.OK() {
			t.Fatalf("Send = %+v, want delivered without a provider token", res)
		}
		m.Topic = "" // APNs falls back to the certificate's topic
		if res := s.Send(context.Background(), m, token(1)); !res.OK() {
			t.Fatalf("Send without topic = %+v, want delivered to the certificate's topic", res)
		}
		if got := sim.Stats().Tokens[token(1)]; got != 2 {
			t.Errorf("token delivered %d times, want 2", got)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		s := newCertSender(strangerFile)
		res := s.Send(context.Background(), alertMessage(token(2)), token(2))
		if res.Class != push.BadCredentials || res.Reason != "BadCertificate" {
			t.Fatalf("Send = %+v, want bad-credentials BadCertificate from the GOAWAY", res)
		}
		if sim.Stats().Rejected["BadCertificate"] == 0 {
			t.Error("simulator did not count the BadCertificate")
		}
	})
}

// TestCertificatePasswordFile: the password of an encrypted key is read
// from --cert-password-file (first line), so it need not be a flag value.
func TestCertificatePasswordFile(t *testing.T) {
	dir := t.TempDir()
	caFile, clientFile := clientPKI(t, dir, "com.example.app")
	sim := startSim(t, apnssim.Config{ClientCAFile: caFile})
	// Encrypt the key block of client.pem with the password.
	raw, err := os.ReadFile(clientFile)
	if err != nil {
		t.Fatal(err)
	}
	certBlock, rest := pem.Decode(raw)
	keyBlock, _ := pem.Decode(rest)
	//lint:ignore SA1019 legacy PEM encryption is what encrypted push-certificate keys use, and what apns2 decrypts
	enc, err := x509.EncryptPEMBlock(rand.Reader, "PRIVATE KEY", keyBlock.Bytes, []byte("s3cret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	encFile := filepath.Join(dir, "client-encrypted.pem")
	if err := os.WriteFile(encFile, append(pem.EncodeToMemory(certBlock), pem.EncodeToMemory(enc)...), 0o600); err != nil {
		t.Fatal(err)
	}
	writePassword := func(content string) string {
		p := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	s, err := push.NewSender(push.Config{Host: sim.URL(), CAFile: sim.CAFile(), CertFile: encFile, CertPasswordFile: writePassword("s3cret\n"), Connections: 1})
	if err != nil {
		t.Fatalf("NewSender with the password file: %v", err)
	}
	defer s.Close()
	if res := s.Send(context.Background(), alertMessage(token(3)), token(3)); !res.OK() {
		t.Fatalf("Send = %+v", res)
	}
	for name, cfg := range map[string]push.Config{
		"wrong password": {CertFile: encFile, CertPasswordFile: writePassword("nope\n")},
		"missing file":   {CertFile: encFile, CertPasswordFile: filepath.Join(dir, "absent")},
		"file and value": {CertFile: encFile, CertPasswordFile: writePassword("s3cret"), CertPassword: "s3cret"},
	} {
		cfg.Host, cfg.CAFile = sim.URL(), sim.CAFile()
		if s, err := push.NewSender(cfg); err == nil {
			s.Close()
			t.Errorf("%s: NewSender succeeded", name)
		}
	}
}
