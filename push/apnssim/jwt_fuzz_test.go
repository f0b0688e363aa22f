package apnssim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
)

// FuzzParseJWT: any bearer string is either rejected or yields the claims
// it carries; nothing panics. With a trust key, only tokens signed by it
// pass.
func FuzzParseJWT(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": "TEAM123456", "iat": time.Now().Unix()})
	tok.Header["kid"] = "KEY1234567"
	good, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	// The same signature bytes spelt with non-zero unused bits in the last
	// character: not the good token, so it must be refused.
	last := strings.IndexByte(base64URL, good[len(good)-1])
	f.Add(good[:len(good)-1] + string(base64URL[last^1]))
	f.Add("a.b.c")
	f.Add("")
	f.Add(strings.Repeat(".", 5))
	trusting := &Server{trustKeys: []*ecdsa.PublicKey{&key.PublicKey}}
	open := &Server{}
	if c, ok := trusting.parseJWT(good); !ok || c.kid != "KEY1234567" || c.iss != "TEAM123456" {
		f.Fatalf("a well-signed token was rejected: %+v %v", c, ok)
	}
	f.Fuzz(func(t *testing.T, bearer string) {
		c, ok := open.parseJWT(bearer)
		if ok && (c.kid == "" || c.iss == "") {
			t.Fatalf("accepted %q without kid or iss", bearer)
		}
		// Only our own token verifies: the fuzzer cannot forge ECDSA, and
		// any other spelling of the signed text or the signature is refused.
		if _, ok := trusting.parseJWT(bearer); ok && bearer != good {
			t.Fatalf("a token other than the one signed by the trust key was accepted: %q", bearer)
		}
	})
}

const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
