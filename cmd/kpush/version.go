package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpush/kpush/queued"
)

// version is set at release build time with
// -ldflags "-X main.version=v1.2.3"; otherwise it comes from the module's
// build info.
var version = ""

func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "devel"
		if ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
	}
	return v
}

// numericVersion is the version queued answers `version` with: the
// release's major.minor.micro (v1.2.3-rc.1 gives 1.2.3). Clients parse it
// as numbers, each at most 255, and libmemcached (so PHP's memcached
// extension) also refuses a major version of 0; so development builds,
// pseudo-versions and releases before 1.0 answer 1.0.0, and `stats` says
// which build it is.
func numericVersion(v string) string {
	const fallback = "1.0.0"
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return fallback
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || strconv.FormatUint(n, 10) != p || i == 0 && n == 0 {
			return fallback
		}
	}
	return strings.Join(parts, ".")
}

// setQueuedVersion tells queued what to report: the numeric version to
// `version`, the build to `stats`.
func setQueuedVersion() {
	queued.Build = versionString()
	queued.Version = numericVersion(queued.Build)
}

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version and build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kpush %s\n", versionString())
			fmt.Fprintf(out, "memcache version: %s (queued's answer to version)\n", numericVersion(versionString()))
			info, ok := debug.ReadBuildInfo()
			if !ok {
				return nil
			}
			fmt.Fprintf(out, "go: %s\n", info.GoVersion)
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH", "CGO_ENABLED":
					fmt.Fprintf(out, "%s: %s\n", s.Key, s.Value)
				}
			}
			return nil
		},
	})
}
