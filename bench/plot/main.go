// Command plot draws the README's benchmark pictures from the results files
// the bench/ scripts write (bench/README.md, "Results files"): one SVG per
// kind of benchmark, from the latest run in its results.
//
//	cd bench/plot && go run .        # reads ../results/*.jsonl, writes ../../docs/img/*.svg
//
// It is its own module so that gonum/plot, which only this program needs,
// stays out of kpush's dependencies.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// record is one line of a results file.
type record struct {
	Bench   string  `json:"bench"`
	Series  string  `json:"series"`
	X       float64 `json:"x"`
	Y       float64 `json:"y"`
	Run     string  `json:"run"`
	Machine string  `json:"machine"`
	Command string  `json:"command"`
}

// chart says how one kind of benchmark is drawn.
type chart struct {
	title  func(recs []record) string
	xLabel string
	yLabel string // for panels, each panel is labelled with its series
	// xTicksAtData puts one x tick at each measured x (connection counts,
	// concurrency levels) on a log scale.
	xTicksAtData bool
	// panels draws each series in its own panel, stacked, sharing x (for
	// quantities of different units).
	panels bool
}

var charts = map[string]chart{
	"flood": {
		title:  constant("Set/get flood: requests per second by client connections"),
		xLabel: "client connections (log scale)", yLabel: "requests/s (sets + gets)",
		xTicksAtData: true,
	},
	"backlog": {
		title: func(recs []record) string {
			depth := 0.0
			for _, r := range recs {
				if strings.Contains(r.Series, "items") {
					depth = max(depth, r.Y)
				}
			}
			// The deepest sample, to two significant digits: the
			// sampler may miss the exact peak by a few thousand items.
			depth, _ = strconv.ParseFloat(strconv.FormatFloat(depth, 'g', 2, 64), 64)
			return "Backlog: " + si(depth) + " items filled, then drained"
		},
		xLabel: "seconds", panels: true,
	},
	"e2e": {
		title:  constant("End to end: deliveries per second by worker --concurrency"),
		xLabel: "kpush worker --concurrency (log scale)", yLabel: "deliveries/s",
		xTicksAtData: true,
	},
}

func constant(s string) func([]record) string { return func([]record) string { return s } }

func main() {
	in := flag.String("in", "../results", "directory of the results files (*.jsonl)")
	out := flag.String("out", "../../docs/img", "directory the SVGs are written to")
	check := flag.Bool("check", false, "write nothing; fail if an SVG in -out differs from what the results give")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*in, *out, *check); err != nil {
		log.Fatal("plot: ", err)
	}
}

func run(in, out string, check bool) error {
	files, err := filepath.Glob(filepath.Join(in, "*.jsonl"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no results files (*.jsonl) in %s", in)
	}
	var all []record
	for _, name := range files {
		recs, err := readResults(name)
		if err != nil {
			return err
		}
		all = append(all, recs...)
	}
	var stale []string
	for bench, recs := range latestRuns(all) {
		svg, err := draw1(bench, recs)
		if err != nil {
			return fmt.Errorf("%s: %w", bench, err)
		}
		path := filepath.Join(out, bench+".svg")
		if check {
			old, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(old, svg) {
				stale = append(stale, path)
			}
			continue
		}
		if err := os.WriteFile(path, svg, 0o644); err != nil {
			return err
		}
		log.Printf("wrote %s (%d points, run %s)", path, len(recs), recs[0].Run)
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		return fmt.Errorf("out of date with the results (run: cd bench/plot && go run .): %s", strings.Join(stale, ", "))
	}
	return nil
}

// readResults reads one results file: JSON Lines, blank lines ignored.
func readResults(name string) ([]record, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseResults(f, name)
}

func parseResults(r io.Reader, name string) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(r)
	for num := 1; sc.Scan(); num++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var rec record
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, num, err)
		}
		switch {
		case charts[rec.Bench].title == nil:
			return nil, fmt.Errorf("%s:%d: unknown bench %q (want flood, backlog or e2e)", name, num, rec.Bench)
		case rec.Series == "" || rec.Run == "":
			return nil, fmt.Errorf("%s:%d: series and run are required", name, num)
		case math.IsNaN(rec.X) || math.IsNaN(rec.Y) || math.IsInf(rec.X, 0) || math.IsInf(rec.Y, 0):
			return nil, fmt.Errorf("%s:%d: x and y must be finite numbers", name, num)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// latestRuns keeps, for each bench, the records of its latest run (runs
// are UTC stamps, so the greatest string is the latest).
func latestRuns(all []record) map[string][]record {
	latest := map[string]string{}
	for _, r := range all {
		latest[r.Bench] = max(latest[r.Bench], r.Run)
	}
	out := map[string][]record{}
	for _, r := range all {
		if r.Run == latest[r.Bench] {
			out[r.Bench] = append(out[r.Bench], r)
		}
	}
	return out
}

// seriesOf groups records by series, in order of first appearance.
func seriesOf(recs []record) (names []string, points map[string]plotter.XYs) {
	points = map[string]plotter.XYs{}
	for _, r := range recs {
		if _, ok := points[r.Series]; !ok {
			names = append(names, r.Series)
		}
		points[r.Series] = append(points[r.Series], plotter.XY{X: r.X, Y: r.Y})
	}
	for _, xys := range points {
		slices.SortStableFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
	}
	return names, points
}

// palette: distinguishable in print and for common colour blindness
// (Okabe and Ito).
var palette = []color.Color{
	color.RGBA{0, 114, 178, 255},
	color.RGBA{213, 94, 0, 255},
	color.RGBA{0, 158, 115, 255},
	color.RGBA{204, 121, 167, 255},
	color.RGBA{86, 180, 233, 255},
	color.RGBA{230, 159, 0, 255},
	color.RGBA{0, 0, 0, 255},
}

const (
	width       = 18 * vg.Centimeter
	panelHeight = 8 * vg.Centimeter
)

// draw1 renders the SVG of one bench.
func draw1(bench string, recs []record) ([]byte, error) {
	c := charts[bench]
	names, points := seriesOf(recs)
	caption := wrap(recs[0].Machine, 60) + "\n" + wrap(fmt.Sprintf("run %s: %s", recs[0].Run, recs[0].Command), 60)

	var plots []*plot.Plot
	if c.panels {
		for i, name := range names {
			p := newPlot(c)
			p.Y.Label.Text = name
			if err := addSeries(p, name, points[name], i, false); err != nil {
				return nil, err
			}
			plots = append(plots, p)
		}
	} else {
		p := newPlot(c)
		p.Y.Label.Text = c.yLabel
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		// Head room above the highest point for the legend.
		maxY := 0.0
		for _, r := range recs {
			maxY = max(maxY, r.Y)
		}
		p.Y.Max = maxY * (1.15 + 0.09*float64(len(names)))
		for i, name := range names {
			if err := addSeries(p, name, points[name], i, true); err != nil {
				return nil, err
			}
		}
		if c.xTicksAtData {
			var xs []float64
			for _, xys := range points {
				for _, xy := range xys {
					xs = append(xs, xy.X)
				}
			}
			p.X.Scale = plot.LogScale{}
			p.X.Min, p.X.Max = slices.Min(xs), slices.Max(xs)
			p.X.Tick.Marker = ticksAt(xs)
		}
		plots = append(plots, p)
	}
	plots[0].Title.Text = c.title(recs) + "\n" + caption
	plots[0].Title.TextStyle.Font.Size = vg.Points(11)
	for _, p := range plots[:len(plots)-1] {
		p.X.Label.Text = ""
	}

	height := panelHeight*vg.Length(len(plots)) + 2*vg.Centimeter // the title's lines
	canvas := vgsvg.New(width, height)
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadX: vg.Millimeter, PadY: 2 * vg.Millimeter}
	cells := plot.Align(grid, tiles, draw.New(canvas))
	for i, p := range plots {
		p.Draw(cells[i][0])
	}
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newPlot(c chart) *plot.Plot {
	p := plot.New()
	p.X.Label.Text = c.xLabel
	p.X.Tick.Marker = siTicks{}
	p.X.Min = 0
	p.Y.Tick.Marker = siTicks{}
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	return p
}

// addSeries draws one series: a line with its points marked.
func addSeries(p *plot.Plot, name string, xys plotter.XYs, i int, legend bool) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	col := palette[i%len(palette)]
	line.Color = col
	line.Width = vg.Points(1.5)
	points.Color = col
	points.Shape = shapes[i%len(shapes)]
	if len(xys) > 50 {
		points.Radius = 0 // a time series: the line alone
	}
	p.Add(line, points)
	if legend {
		p.Legend.Add(name, line, points)
	}
	return nil
}

var shapes = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PlusGlyph{}, draw.CrossGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}}

// wrap breaks s into lines of at most width bytes, at spaces.
func wrap(s string, width int) string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return strings.Join(append(lines, line), "\n")
}

// ticksAt marks exactly the given x values.
func ticksAt(xs []float64) plot.ConstantTicks {
	slices.Sort(xs)
	xs = slices.Compact(xs)
	ticks := make(plot.ConstantTicks, len(xs))
	for i, x := range xs {
		ticks[i] = plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)}
	}
	return ticks
}

// siTicks labels the default ticks as 50k, 1.5M rather than 50000, 1.5e+06.
type siTicks struct{}

func (siTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = si(ticks[i].Value)
		}
	}
	return ticks
}

func si(v float64) string {
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.div {
			return strconv.FormatFloat(v/u.div, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
