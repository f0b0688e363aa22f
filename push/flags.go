package push

import (
	"github.com/spf13/pflag"
)

// RegisterFlags binds the APNs connection and credential flags every kpush
// command that sends pushes shares (kpush push, worker, up), so their names
// stay identical: --auth-key, --key-id, --team-id, --cert, --cert-password,
// --apns-host, --apns-ca, --development, --apns-connections.
//
// A field already set is the flag's default; Connections 0 shows as
// DefaultConnections, the number NewSender uses for it.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	if c.Connections <= 0 {
		c.Connections = DefaultConnections
	}
	fs.StringVar(&c.AuthKeyFile, "auth-key", c.AuthKeyFile, "token auth: Apple's .p8 auth key file")
	fs.StringVar(&c.KeyID, "key-id", c.KeyID, "token auth: the auth key's 10-character key ID")
	fs.StringVar(&c.TeamID, "team-id", c.TeamID, "token auth: your 10-character team ID")
	fs.StringVar(&c.CertFile, "cert", c.CertFile, "certificate auth: push certificate with its key (.p12 or .pem)")
	fs.StringVar(&c.CertPassword, "cert-password", c.CertPassword, "certificate auth: password of the .p12 or encrypted PEM key (visible in the process list: prefer --cert-password-file)")
	fs.StringVar(&c.CertPasswordFile, "cert-password-file", c.CertPasswordFile, "certificate auth: file whose first line is the password of the .p12 or encrypted PEM key")
	fs.StringVar(&c.Host, "apns-host", c.Host, "APNs base URL (default Apple production, or sandbox with --development), e.g. https://127.0.0.1:2197 for kpush apns-sim")
	fs.StringVar(&c.CAFile, "apns-ca", c.CAFile, "extra CA certificate (PEM) to trust for --apns-host, e.g. the simulator's ca.pem")
	fs.BoolVar(&c.Development, "development", c.Development, "use Apple's sandbox host api.sandbox.push.apple.com")
	fs.IntVar(&c.Connections, "apns-connections", c.Connections, "HTTP/2 connections to APNs; each carries up to 1,000 pushes at once")
}

// RegisterFlags binds the FCM flags every kpush command that sends pushes
// shares (kpush push, worker, up): --fcm-credentials, --fcm-endpoint,
// --fcm-ca, --fcm-connections.
func (c *FCMConfig) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CredentialsFile, "fcm-credentials", c.CredentialsFile, "FCM: the service-account JSON file from the Firebase console (docs/fcm.md)")
	fs.StringVar(&c.Endpoint, "fcm-endpoint", c.Endpoint, "FCM base URL (default https://fcm.googleapis.com), e.g. https://127.0.0.1:4004 for kpush fcm-sim")
	fs.StringVar(&c.CAFile, "fcm-ca", c.CAFile, "extra CA certificate (PEM) to trust for --fcm-endpoint and the token endpoint, e.g. the simulator's ca.pem")
	fs.IntVar(&c.Connections, "fcm-connections", c.Connections, "HTTP/2 connections to FCM, each with up to 100 sends in flight (0 means 4)")
}
