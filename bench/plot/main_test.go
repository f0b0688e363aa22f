package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixture = `{"bench":"flood","series":"memcached","x":10,"y":20000,"run":"20260101T000000Z","machine":"old","command":"bash bench/compare.sh"}
{"bench":"flood","series":"memcached","x":1,"y":3000,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/compare.sh"}

{"bench":"flood","series":"kpush queued --sync never","x":1,"y":2500,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/compare.sh"}
{"bench":"flood","series":"memcached","x":10,"y":30000,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/compare.sh"}
{"bench":"flood","series":"kpush queued --sync never","x":10,"y":26000,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/compare.sh"}
{"bench":"backlog","series":"RSS (MiB)","x":0,"y":12,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/backlog.sh"}
{"bench":"backlog","series":"RSS (MiB)","x":1,"y":14,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/backlog.sh"}
{"bench":"backlog","series":"queue depth (items)","x":0,"y":0,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/backlog.sh"}
{"bench":"backlog","series":"queue depth (items)","x":1,"y":500000,"run":"20261204T000000Z","machine":"2 vCPU","command":"bash bench/backlog.sh"}
`

func TestParseAndLatestRun(t *testing.T) {
	recs, err := parseResults(strings.NewReader(fixture), "fixture")
	if err != nil {
		t.Fatal(err)
	}
	runs := latestRuns(recs)
	if len(runs["flood"]) != 4 || len(runs["backlog"]) != 4 {
		t.Fatalf("latest runs: %d flood, %d backlog records; want 4 and 4 (the old run left out)", len(runs["flood"]), len(runs["backlog"]))
	}
	for _, r := range runs["flood"] {
		if r.Run != "20261204T000000Z" {
			t.Errorf("record of run %s kept", r.Run)
		}
	}
	names, points := seriesOf(runs["flood"])
	if strings.Join(names, "|") != "memcached|kpush queued --sync never" || points["memcached"][0].X != 1 {
		t.Errorf("series %v, memcached points %v: want file order and points sorted by x", names, points["memcached"])
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		`{"bench":"flod","series":"a","x":1,"y":1,"run":"r"}`,
		`{"bench":"flood","x":1,"y":1,"run":"r"}`,
		`{"bench":"flood","series":"a","x":1,"y":1}`,
		`{"bench":"flood","series":"a","x":1,"y":1,"run":"r","ops":3}`,
		`{"bench":"flood","series":"a","x":"1","y":1,"run":"r"}`,
		`not json`,
	} {
		if _, err := parseResults(strings.NewReader(bad), "f"); err == nil || !strings.Contains(err.Error(), "f:1:") {
			t.Errorf("parseResults(%s) = %v, want an error naming f:1", bad, err)
		}
	}
}

func TestRunWritesAndChecks(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "r.jsonl"), []byte(fixture), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out, true); err == nil || !strings.Contains(err.Error(), "out of date") {
		t.Fatalf("check before writing: %v, want out of date", err)
	}
	if err := run(in, out, false); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(out, "flood.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "memcached", "kpush queued --sync never", "2 vCPU", "bash bench/compare.sh"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("flood.svg lacks %q", want)
		}
	}
	// Drawing is deterministic, so a check right after writing passes and
	// the committed pictures can be checked against their results.
	if err := run(in, out, true); err != nil {
		t.Fatalf("check after writing: %v", err)
	}
	if err := os.WriteFile(filepath.Join(in, "r.jsonl"), []byte(strings.Replace(fixture, `"y":26000`, `"y":27000`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out, true); err == nil || !strings.Contains(err.Error(), "flood.svg") {
		t.Fatalf("check after the results changed: %v, want flood.svg out of date", err)
	}
}

func TestWrap(t *testing.T) {
	if got := wrap("aa bb cc dd", 5); got != "aa bb\ncc dd" {
		t.Errorf("wrap = %q", got)
	}
	if got := wrap("averyveryverylongword x", 5); got != "averyveryverylongword\nx" {
		t.Errorf("wrap of a long word = %q", got)
	}
}
