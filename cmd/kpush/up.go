package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/push/fcmsim"
	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/config"
	"github.com/kpush/kpush/worker"
)

// upOptions are the flags of kpush up.
type upOptions struct {
	listen       string
	dataDir      string
	simListen    string
	fcmSimListen string
	adminListen  string
	queue        string
	concurrency  int
	syncFlag     string
	interval     time.Duration
	apns         push.Config
	fcm          push.FCMConfig
}

func init() {
	var o upOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole pipeline in one process: queued, a worker and (without credentials) the APNs and FCM simulators",
		Long: `up runs the whole pipeline on embedded defaults, for development and trying
kpush out:

  queued     on --listen (127.0.0.1:22133), journals in --data-dir/queued
  worker     consuming queue "push" from that queued
  apns-sim   on --sim-listen (127.0.0.1:2197) when no Apple credentials are
             given: nothing reaches Apple, and up says so
  fcm-sim    on --fcm-sim-listen (127.0.0.1:4004) when no --fcm-credentials
             are given: nothing reaches Google, and up says so

Give --auth-key/--key-id/--team-id or --cert to deliver to Apple, and
--fcm-credentials to deliver to Android phones through FCM, instead.
Then enqueue from another terminal:

  kpush enqueue --token <64 hex digits> --topic com.example.app --alert hi
  kpush enqueue --fcm-token <registration token> --alert hi

or with any memcache client (set push 0 0 <bytes>). SIGINT/SIGTERM shut it
down in order: the worker gives back what it holds, queued syncs its
journals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext()
			defer stop()
			if !cmd.Flags().Changed("apns-connections") {
				o.apns.Connections = push.ConnectionsFor(o.concurrency)
			}
			return runUp(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:22133", "queued listen address")
	f.StringVar(&o.dataDir, "data-dir", "data", "data directory: journals in DIR/queued, simulator files in DIR/apns-sim and DIR/fcm-sim")
	f.StringVar(&o.simListen, "sim-listen", apnssim.DefaultAddr, "APNs simulator listen address (used only without Apple credentials)")
	f.StringVar(&o.fcmSimListen, "fcm-sim-listen", fcmsim.DefaultAddr, "FCM simulator listen address (used only without --fcm-credentials)")
	f.StringVar(&o.adminListen, "admin-listen", "", "serve the worker's /metrics and /healthz here (empty: off)")
	f.StringVar(&o.queue, "queue", "push", "queue the worker consumes")
	f.IntVar(&o.concurrency, "concurrency", 1000, "most pushes in flight")
	f.StringVar(&o.syncFlag, "sync", "always", "journal sync policy: always, never or an interval such as 10ms")
	f.DurationVar(&o.interval, "status-interval", time.Second, "period of the live status line (0: off)")
	o.apns.RegisterFlags(f)
	connectionsFollowConcurrency(f)
	o.fcm.RegisterFlags(f)
	rootCmd.AddCommand(cmd)
}

func runUp(ctx context.Context, out io.Writer, o upOptions) error {
	log := slog.Default()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// queued, with the worker's delay queue configured.
	qcfg := queued.DefaultConfig()
	qcfg.Listen = o.listen
	qcfg.DataDir = filepath.Join(o.dataDir, "queued")
	sync, err := config.ParseSyncPolicy(o.syncFlag)
	if err != nil {
		return fmt.Errorf("--sync: %w", err)
	}
	qcfg.Defaults.Sync = sync
	retry := qcfg.Defaults
	retry.ExpireToQueue = o.queue
	qcfg.Queues[o.queue+"_retry"] = retry
	setQueuedVersion()
	srv, err := queued.NewServer(qcfg, log)
	if err != nil {
		return explainStartError(err, "kpush up")
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		_ = srv.Shutdown(ctx)
		return explainStartError(fmt.Errorf("queued: %w", err), "kpush up")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error("queued shutdown", "err", err)
		}
	}()

	// The simulator, unless Apple credentials were given.
	apns := o.apns
	apns.Logger = log
	var sim *apnssim.Server
	if apns.AuthKeyFile == "" && apns.CertFile == "" {
		simDir := filepath.Join(o.dataDir, "apns-sim")
		keyFile, err := apnssim.EnsureDevKey(simDir)
		if err != nil {
			return err
		}
		sim, err = apnssim.New(apnssim.Config{TLSDir: simDir, TrustKeys: []string{keyFile}, Logger: log})
		if err != nil {
			return err
		}
		if err := sim.Start(o.simListen); err != nil {
			return fmt.Errorf("%w (choose another --sim-listen)", err)
		}
		defer sim.Close()
		apns.Host, apns.CAFile = sim.URL(), sim.CAFile()
		// Tokens signed with the development key, which the simulator
		// verifies: the whole provider-token path runs.
		apns.AuthKeyFile, apns.KeyID, apns.TeamID = keyFile, apnssim.DevKeyID, apnssim.DevTeamID
	}
	sender, err := push.NewSender(apns)
	if err != nil {
		return err
	}
	defer sender.Close()

	// The FCM simulator, unless FCM credentials were given.
	fcm := o.fcm
	fcm.Logger = log
	var fsim *fcmsim.Server
	if fcm.CredentialsFile == "" {
		fsim, err = fcmsim.New(fcmsim.Config{TLSDir: filepath.Join(o.dataDir, "fcm-sim"), Logger: log})
		if err != nil {
			return err
		}
		if err := fsim.Start(o.fcmSimListen); err != nil {
			return fmt.Errorf("%w (choose another --fcm-sim-listen)", err)
		}
		defer fsim.Close()
		// The simulator's development service account: the whole OAuth2
		// flow (signed assertion, access tokens, renewal) runs.
		fcm.CredentialsFile, fcm.Endpoint, fcm.CAFile = fsim.ServiceAccountFile(), fsim.URL(), fsim.CAFile()
	}
	fcmSender, err := push.NewFCMSender(fcm)
	if err != nil {
		return err
	}
	defer fcmSender.Close()

	servers := []string{ln.Addr().String()}
	prod, err := producer.New(servers, producer.WithAtLeastOnce(), producer.WithLogger(log))
	if err != nil {
		return err
	}
	defer prod.Close()
	w, err := worker.New(worker.Config{
		Servers:         servers,
		Queue:           o.queue,
		Concurrency:     o.concurrency,
		AdminListen:     o.adminListen,
		SummaryInterval: -1, // the live line below replaces the log summary
		Logger:          log,
		FCM:             fcmSender,
	}, sender, prod)
	if err != nil {
		return err
	}

	printUpBanner(out, o, ln.Addr().String(), qcfg, sim, apns, fsim, fcmSender)

	workerErr := make(chan error, 1)
	go func() { workerErr <- w.Run(ctx) }()

	status := newUpStatus(out)
	var tick <-chan time.Time
	if o.interval > 0 {
		t := time.NewTicker(o.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-workerErr:
			status.done()
			if err != nil {
				return fmt.Errorf("worker stopped: %w", err)
			}
			return nil
		case err := <-serveErr:
			cancel()
			<-workerErr
			status.done()
			return fmt.Errorf("queued stopped: %w", err)
		case <-tick:
			status.update(w.Stats(), backlog(srv.Stats(), o.queue))
		}
	}
}

// printUpBanner prints what runs where and, for a newcomer, commands to try
// from another terminal. Every line indented by four spaces is one command
// that runs as printed (TestDocCommandsRun runs them); nothing else is
// indented that far.
func printUpBanner(out io.Writer, o upOptions, addr string, qcfg queued.Config, sim *apnssim.Server, apns push.Config, fsim *fcmsim.Server, fcm *push.FCMSender) {
	fmt.Fprintf(out, "kpush %s: the whole pipeline in one process\n", versionString())
	fmt.Fprintf(out, "  queued    %s  (journals in %s, sync %s)\n", addr, qcfg.DataDir, o.syncFlag)
	fmt.Fprintf(out, "  worker    queue %q from %s, concurrency %d\n", o.queue, addr, o.concurrency)
	if o.adminListen != "" {
		fmt.Fprintf(out, "  metrics   http://%s/metrics\n", o.adminListen)
	}
	if sim != nil {
		fmt.Fprintf(out, "  apns-sim  %s  (TLS files and development key in %s)\n", sim.URL(), absPath(filepath.Dir(sim.CAFile())))
	} else {
		host := apns.Host
		if host == "" {
			host = "Apple production (api.push.apple.com)"
			if apns.Development {
				host = "Apple sandbox (api.sandbox.push.apple.com)"
			}
		}
		fmt.Fprintf(out, "  apns      %s\n", host)
	}
	if fsim != nil {
		fmt.Fprintf(out, "  fcm-sim   %s  (TLS files and service account in %s)\n", fsim.URL(), absPath(filepath.Dir(fsim.CAFile())))
	} else {
		fmt.Fprintf(out, "  fcm       project %s\n", fcm.Project())
	}
	if sim != nil {
		fmt.Fprintln(out, "")
		fmt.Fprintln(out, "  *** No Apple credentials given: pushes go to the local APNs SIMULATOR, not to Apple. ***")
		fmt.Fprintln(out, "  *** Pass --auth-key/--key-id/--team-id (or --cert) to deliver to real devices.      ***")
	}
	if fsim != nil {
		fmt.Fprintln(out, "")
		fmt.Fprintln(out, "  *** No FCM credentials given: Android pushes go to the local FCM SIMULATOR, not to Google. ***")
		fmt.Fprintln(out, "  *** Pass --fcm-credentials service-account.json to deliver to real Android devices.       ***")
	}

	// Example tokens the simulators accept; with real credentials, the
	// user's own.
	token, fcmToken := "<your device token, hex>", "<your FCM registration token>"
	if sim != nil {
		token = randomHex(32)
	}
	if fsim != nil {
		fcmToken = "dev:APA91b" + randomHex(70)
	}
	kpush := selfCommand()
	host, port, _ := net.SplitHostPort(addr)
	fmt.Fprintln(out, "")
	fmt.Fprintln(out, "From another terminal, each indented line being one command:")
	fmt.Fprintln(out, "  enqueue a notification for an iPhone and one for an Android phone (the status line below counts them):")
	fmt.Fprintf(out, "    %s enqueue --servers %s --queue %s --token %s --topic com.example.app --alert hi\n", kpush, addr, o.queue, token)
	fmt.Fprintf(out, "    %s enqueue --servers %s --queue %s --fcm-token %s --alert hi\n", kpush, addr, o.queue, fcmToken)
	fmt.Fprintln(out, "  the same with any memcache client; here with bash alone:")
	msg := fmt.Sprintf(`{"tokens":["%s"],"topic":"com.example.app","alert":"hi"}`, token)
	fmt.Fprintf(out, "    (msg='%s'; exec 3<>/dev/tcp/%s/%s; printf 'set %s 0 0 %%d\\r\\n%%s\\r\\nquit\\r\\n' \"${#msg}\" \"$msg\" >&3; cat <&3)\n", msg, host, port, o.queue)
	if sim != nil {
		ca, key := absPath(sim.CAFile()), absPath(apns.AuthKeyFile)
		fmt.Fprintln(out, "  send one push straight to the APNs simulator, past the queue:")
		fmt.Fprintf(out, "    %s push --apns-host %s --apns-ca %s --auth-key %s --key-id %s --team-id %s --token %s --topic com.example.app --alert hi\n",
			kpush, sim.URL(), ca, key, apns.KeyID, apns.TeamID, token)
		fmt.Fprintln(out, "  what the APNs simulator accepted (with curl):")
		fmt.Fprintf(out, "    curl -sS -w '\\n' --cacert %s '%s/sim/stats?tokens=0'\n", ca, sim.URL())
	}
	fmt.Fprintln(out, "")
}

// selfCommand is how to run this kpush again from a shell: "kpush" when
// that is it on PATH, "go run ./cmd/kpush" when go run started it (the
// binary then lives in Go's temporary build directory, gone afterwards),
// else its path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "kpush"
	}
	if p, err := exec.LookPath("kpush"); err == nil {
		a, aerr := os.Stat(p)
		b, berr := os.Stat(exe)
		if aerr == nil && berr == nil && os.SameFile(a, b) {
			return "kpush"
		}
	}
	sep := string(filepath.Separator)
	if strings.Contains(exe, sep+"go-build") && strings.Contains(exe, sep+"exe"+sep) {
		return "go run ./cmd/kpush"
	}
	return exe
}

// absPath is path made absolute, so a printed command works from any
// directory.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func backlog(st queued.ServerStats, queue string) int64 {
	for _, q := range st.Queues {
		if q.Name == queue {
			return q.Items
		}
	}
	return 0
}

// upStatus prints the live line: rewritten in place on a terminal, one line
// per change otherwise (so logs and pipes stay readable).
type upStatus struct {
	out     io.Writer
	tty     bool
	last    worker.Stats
	lastAt  time.Time
	lastKey string
}

func newUpStatus(out io.Writer) *upStatus {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &upStatus{out: out, tty: tty, lastAt: time.Now()}
}

func (s *upStatus) update(st worker.Stats, backlog int64) {
	now := time.Now()
	rate := float64(st.Delivered-s.last.Delivered) / now.Sub(s.lastAt).Seconds()
	s.last, s.lastAt = st, now
	line := fmt.Sprintf("delivered=%d dead_tokens=%d failed=%d requeued=%d in_flight=%d backlog=%d rate=%.0f/s fcm_delivered=%d",
		st.Delivered, st.DeadTokens, st.Failed, st.Requeued, st.InFlight, backlog, rate, st.FCMDelivered)
	if s.tty {
		fmt.Fprintf(s.out, "\r\033[K%s", line)
		return
	}
	// Off a terminal, print only when something changed.
	key := fmt.Sprintf("%d %d %d %d %d %d %d", st.Delivered, st.DeadTokens, st.Failed, st.Requeued, st.InFlight, backlog, st.FCMDelivered)
	if key != s.lastKey {
		s.lastKey = key
		fmt.Fprintln(s.out, line)
	}
}

func (s *upStatus) done() {
	if s.tty {
		fmt.Fprintln(s.out)
	}
}
