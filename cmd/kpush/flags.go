package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kpush/kpush/discovery"
)

// Flag conventions, for every subcommand (TestFlagsAgree checks the first):
//
//   - One name and one type per concept. --servers is always a list of
//     queued addresses (comma-separated or repeated), --queue the queue's
//     name, --concurrency an int, --status-interval the period of a
//     command's one-line status, --data the k=v / k:=JSON custom payload.
//   - A flag renamed for that rule keeps its old spelling as an alias
//     (aliasFlags): scripts go on working, help shows only the new name.

// defaultQueuedPort is Kestrel's port, used for a queued address given
// without one ("localhost").
const defaultQueuedPort = "22133"

// addServersFlag registers --servers, the queued servers a command talks to.
func addServersFlag(fs *pflag.FlagSet, p *[]string, usage string) {
	fs.StringSliceVar(p, "servers", []string{"127.0.0.1:" + defaultQueuedPort},
		usage+", comma-separated or repeated: host:port (port "+defaultQueuedPort+" when left out), dns:NAME:PORT (every address of NAME) or dns+srv:NAME (SRV records)")
}

// addDiscoveryFlags registers --resolve-interval and --dns-server, which
// apply to DNS names in --servers (package discovery).
func addDiscoveryFlags(fs *pflag.FlagSet, interval *time.Duration, dnsServer *string) {
	fs.DurationVar(interval, "resolve-interval", discovery.DefaultInterval, "how often DNS names in --servers (dns:NAME:PORT, dns+srv:NAME) are resolved again")
	fs.StringVar(dnsServer, "dns-server", "", "DNS server (host:port) for the names in --servers, instead of the system's")
}

// serverAddrs cleans the values of --servers: blanks dropped, the default
// port added to a bare host name or IPv4 address.
func serverAddrs(raw []string) ([]string, error) {
	var out []string
	for _, s := range raw {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			continue
		case !strings.Contains(s, ":"):
			s = net.JoinHostPort(s, defaultQueuedPort)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("--servers: give at least one queued server, host:port")
	}
	return out, nil
}

// flagAliases records, per command, the old flag spellings kept working:
// old name → current name.
var flagAliases = map[*cobra.Command]map[string]string{}

// aliasFlags makes each old flag name in aliases (old → current) parse as
// the current one. The old names do not appear in help.
func aliasFlags(cmd *cobra.Command, aliases map[string]string) {
	flagAliases[cmd] = aliases
	fs := cmd.Flags()
	prev := fs.GetNormalizeFunc()
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if current, ok := aliases[name]; ok {
			name = current
		}
		return prev(f, name)
	})
}

// usageError is a command line kpush cannot parse: an unknown command or
// flag, a flag value of the wrong form, a missing argument. kpush exits 2
// for it; 1 for everything else, values it understood but cannot use
// included.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// flagError turns pflag's parse errors into usage errors and suggests the
// nearest flag for an unknown one.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if s := nearestFlag(cmd, name); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return usageErrorf("%s (see kpush %s --help)", msg, strings.TrimPrefix(cmd.CommandPath(), "kpush "))
}

// nearestFlag returns the visible flag of cmd closest to name (at most two
// edits away, or one name starting with the other), or "".
func nearestFlag(cmd *cobra.Command, name string) string {
	best, bestDist := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := editDistance(name, f.Name)
		if strings.HasPrefix(f.Name, name) || strings.HasPrefix(name, f.Name) {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// setUsageRules applies, to cmd and every command below it, the CLI's rules
// for mistakes: an argument a command does not take, a bad flag, or an
// unknown subcommand of a command group is a usage error (exit 2) naming
// the fix; a group given no subcommand prints its help.
func setUsageRules(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(flagError)
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			var names []string
			for _, sub := range c.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			slices.Sort(names)
			return usageErrorf("%s (commands: %s)", msg, strings.Join(names, ", "))
		}
	} else if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				if isUsageError(err) {
					return err
				}
				if want := strings.TrimSpace(strings.TrimPrefix(c.Use, c.Name())); len(args) == 0 && want != "" {
					return usageErrorf("%s: missing %s (usage: %s)", strings.TrimPrefix(c.CommandPath(), "kpush "), want, c.UseLine())
				}
				return usageErrorf("%s: %v (usage: %s)", strings.TrimPrefix(c.CommandPath(), "kpush "), err, c.UseLine())
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		setUsageRules(sub)
	}
}

// connectionsFollowConcurrency makes the help of --apns-connections show
// the default that applies on a command that sizes its APNs connections
// from --concurrency when the flag is not given (kpush worker and up),
// instead of the fixed default kpush push uses.
func connectionsFollowConcurrency(f *pflag.FlagSet) {
	fl := f.Lookup("apns-connections")
	fl.DefValue = "0" // the zero value: pflag then prints no "(default …)"
	fl.Usage += " (default: one per 1,000 of --concurrency)"
}
