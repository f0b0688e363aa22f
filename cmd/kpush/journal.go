package main

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/kpush/kpush/queued/journal"
	"github.com/spf13/cobra"
)

func init() {
	journalCmd := &cobra.Command{
		Use:   "journal",
		Short: "Inspect, verify and import queue journals offline",
	}
	journalCmd.AddCommand(journalDumpCmd(), journalCheckCmd(), journalImportCmd())
	rootCmd.AddCommand(journalCmd)
}

func journalDumpCmd() *cobra.Command {
	var preview int
	cmd := &cobra.Command{
		Use:   "dump <file>",
		Short: "Print every record of a journal file (kpush segment or Kestrel journal, detected by its magic)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := journal.DetectFormat(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			name := map[journal.Format]string{journal.FormatKpush: "kpush", journal.FormatKestrel: "kestrel"}[format]
			fmt.Fprintf(out, "# %s journal %s\n", name, args[0])
			n := 0
			err = journal.DumpFile(args[0], func(e journal.DumpEntry) error {
				n++
				_, err := fmt.Fprintln(out, formatEntry(e, preview))
				return err
			})
			fmt.Fprintf(out, "# %d records\n", n)
			return err
		},
	}
	cmd.Flags().IntVar(&preview, "preview", 32, "bytes of item data to print")
	return cmd
}

func formatEntry(e journal.DumpEntry, preview int) string {
	s := fmt.Sprintf("%10d  %-16s", e.Offset, e.Op)
	switch e.Op {
	case "START":
		s += fmt.Sprintf(" first_id=%d flags=%#x", e.ID, e.Flags)
	case "ADD", "ADDX", "ADD_XID":
		switch {
		case e.Op == "ADD_XID":
			s += fmt.Sprintf(" xid=%d", e.ID)
		case e.ID != 0: // kpush ADD; Kestrel's ADD and ADDX carry no id
			s += fmt.Sprintf(" id=%d", e.ID)
		}
		s += fmt.Sprintf(" add=%s expiry=%s size=%d data=%s", fmtMillis(e.AddTime), fmtMillis(e.Expiry), len(e.Data), previewData(e.Data, preview))
	case "REMOVE":
		for _, r := range e.Ranges {
			if r.First == r.Last {
				s += fmt.Sprintf(" %d", r.First)
			} else {
				s += fmt.Sprintf(" %d-%d", r.First, r.Last)
			}
		}
	case "CLEAR":
		s += fmt.Sprintf(" up_to=%d", e.ID)
	case "SAVE_XID", "UNREMOVE", "CONFIRM_REMOVE":
		s += fmt.Sprintf(" xid=%d", e.ID)
	case "STATE_DUMP":
		s += fmt.Sprintf(" xid=%d open=%d", e.ID, e.Count)
	}
	return s
}

func fmtMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func previewData(b []byte, n int) string {
	cut := b
	if len(cut) > n {
		cut = cut[:n]
	}
	s := fmt.Sprintf("%q", cut)
	if !utf8.Valid(cut) {
		s = fmt.Sprintf("%x", cut)
	}
	if len(b) > n {
		s += "..."
	}
	return s
}

func journalCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:        "check <data-dir>",
		SuggestFor: []string{"verify", "fsck", "validate"},
		Short:      "Verify every queue journal in a data dir without starting the server; exits non-zero on corruption",
		Args:       cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			names, err := journal.Names(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			bad := 0
			for _, name := range names {
				res, err := journal.Check(dir, name)
				var ce *journal.CorruptError
				switch {
				case errors.As(err, &ce):
					bad++
					fmt.Fprintf(out, "CORRUPT queue=%s file=%s offset=%d reason=%q\n", name, ce.File, ce.Offset, ce.Reason)
					continue
				case err != nil:
					return err
				}
				fmt.Fprintf(out, "ok queue=%s segments=%d items=%d bytes=%d\n", name, res.Segments, res.Items, res.Bytes)
				if res.Torn != nil {
					fmt.Fprintf(out, "  torn tail file=%s offset=%d dropped=%d (cut, with a .broken copy, when the queue is opened)\n", res.Torn.File, res.Torn.Offset, res.Torn.Size-res.Torn.Offset)
				}
			}
			fmt.Fprintf(out, "%d journals checked, %d corrupt\n", len(names), bad)
			if bad > 0 {
				return fmt.Errorf("%d of %d journals in %s are corrupt: %w", bad, len(names), dir, journal.ErrCorrupt)
			}
			return nil
		},
	}
}

func journalImportCmd() *cobra.Command {
	var dataDir, queue string
	cmd := &cobra.Command{
		Use:   "import <kestrel-journal>... --data-dir DIR --queue NAME",
		Short: "Append the live items of Kestrel journal files (oldest first) to a queue's journal, offline",
		Long: `import replays Kestrel journal files in the order given (rotated files by
timestamp, then the current one) and appends the items that were live,
open transactions first, to the kpush journal of --queue in --data-dir.
The queue's journal is locked while importing, so this refuses to run
against a queue that a running queued has open.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" || queue == "" {
				return errors.New("import needs --data-dir and --queue")
			}
			res, err := journal.ReplayKestrel(args...)
			if err != nil {
				return err
			}
			if res.Torn != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s ends in an incomplete operation at offset %d; it was ignored, as Kestrel would\n", res.Torn.File, res.Torn.Offset)
			}
			n, err := importItems(dataDir, queue, res.Items)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d items (%d were open reads) into queue %s in %s\n", n, res.Open, queue, dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "queued data directory")
	cmd.Flags().StringVar(&queue, "queue", "", "queue to append to")
	return cmd
}

func importItems(dir, queue string, items []journal.Item) (int, error) {
	j, err := journal.Open(dir, queue, journal.Options{Sync: journal.SyncNever})
	if err != nil {
		return 0, err
	}
	const batch = 1024
	for start := 0; start < len(items); start += batch {
		chunk := items[start:min(start+batch, len(items))]
		c, err := j.Append(chunk)
		if err == nil {
			err = c.Wait()
		}
		if err != nil {
			j.Close()
			return start, fmt.Errorf("import into %s: %w (items before %d were imported)", queue, err, start)
		}
	}
	if err := j.Sync(); err != nil {
		j.Close()
		return 0, err
	}
	return len(items), j.Close()
}
