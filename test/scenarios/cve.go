package scenarios

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"vigil.dev/vigil/detector"
)

// The CVE protocol: syscall-count windows (100 ms) of containers attacked
// with real CVEs (the development part of the SoK data set, see
// ../shared/datasets/sok-dev/README.md). For each CVE and run r = 1..4 a
// method trains on the normal files 3r-2 and 3r-1, takes as threshold the
// highest score on normal file 3r, and scores test file r: the run is
// caught when a window inside the attack span scores above the threshold;
// each window before the attack that does is a false alarm.

// CVERuns is the number of runs per CVE in the protocol.
const CVERuns = 4

// SokDevDir finds the development data set: $VIGIL_SOK_DEV, else
// ../shared/datasets/sok-dev beside the repository that holds src (any
// directory inside it). It reports "" when the directory does not exist.
func SokDevDir(src string) string {
	if d := os.Getenv("VIGIL_SOK_DEV"); d != "" {
		return d
	}
	dir, err := filepath.Abs(src)
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "datasets", "sok-dev")
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				return filepath.Clean(d)
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// CacheDir is where data sets are unpacked: $XDG_CACHE_HOME/vigil, else
// /var/cache/vigil for root, else ~/.cache/vigil.
func CacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vigil")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/vigil"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "vigil")
	}
	return filepath.Join(os.TempDir(), "vigil-cache")
}

// CVERun is one test recording with its attack span (0-based window
// indexes, inclusive) and the normal files of its protocol run.
type CVERun struct {
	CVE         string
	Run         int
	Test        string
	Train       [2]string
	Calib       string
	Start, End  int
	TestWindows int
}

// CVEData is the protocol's runs, the files unpacked under Dir.
type CVEData struct {
	Dir  string
	Runs []CVERun
	CVEs []string
}

// LoadCVEData unpacks sok-dev.tar.xz of dataset into cache (once: a marker
// file says it is complete) and reads labels.csv.
func LoadCVEData(dataset, cache string) (*CVEData, error) {
	dir := filepath.Join(cache, "sok-dev")
	marker := filepath.Join(dir, ".unpacked")
	if _, err := os.Stat(marker); err != nil {
		tarball := filepath.Join(dataset, "sok-dev.tar.xz")
		if _, err := os.Stat(tarball); err != nil {
			return nil, fmt.Errorf("cve data: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cve data: %w", err)
		}
		cmd := exec.Command("tar", "-xJf", tarball, "-C", dir)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cve data: unpack %s into %s: %w: %s", tarball, dir, err, b)
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return nil, fmt.Errorf("cve data: %w", err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dataset, "labels.csv"))
	if err != nil {
		return nil, fmt.Errorf("cve data: %w", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("cve data: labels.csv: %w", err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("cve data: labels.csv has no runs")
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, k := range []string{"cve", "run", "test_rows", "attack_row_start", "attack_row_end"} {
		if _, ok := col[k]; !ok {
			return nil, fmt.Errorf("cve data: labels.csv: no column %q", k)
		}
	}
	d := &CVEData{Dir: dir}
	seen := map[string]bool{}
	for li, r := range recs[1:] {
		num := func(k string) (int, error) {
			v, err := strconv.Atoi(r[col[k]])
			if err != nil {
				return 0, fmt.Errorf("cve data: labels.csv:%d: %s %q: %w", li+2, k, r[col[k]], err)
			}
			return v, nil
		}
		run, err := num("run")
		if err != nil {
			return nil, err
		}
		rows, err := num("test_rows")
		if err != nil {
			return nil, err
		}
		s, err := num("attack_row_start")
		if err != nil {
			return nil, err
		}
		e, err := num("attack_row_end")
		if err != nil {
			return nil, err
		}
		cve := r[col["cve"]]
		f := func(n int, test bool) string {
			suffix := ""
			if test {
				suffix = "_test"
			}
			return filepath.Join(dir, cve, fmt.Sprintf("%s-%d_freqvector%s.csv", cve, n, suffix))
		}
		d.Runs = append(d.Runs, CVERun{CVE: cve, Run: run, Test: f(run, true),
			Train: [2]string{f(3*run-2, false), f(3*run-1, false)}, Calib: f(3*run, false),
			Start: s - 1, End: e - 1, TestWindows: rows})
		if !seen[cve] {
			seen[cve] = true
			d.CVEs = append(d.CVEs, cve)
		}
	}
	return d, nil
}

// A Method is a detector under evaluation: Fit learns from normal files
// (each a time-ordered list of windows) and returns a scorer of a file's
// windows, one score per window.
type Method struct {
	Name string
	Desc string
	Fit  func(train [][]detector.Unit) (func(file []detector.Unit) []float64, error)
}

// CVEResult is one method on one run.
type CVEResult struct {
	CVE        string  `json:"cve"`
	Run        int     `json:"run"`
	Threshold  float64 `json:"threshold"`
	AttackMax  float64 `json:"attack_max"`
	Caught     bool    `json:"caught"`
	PreWindows int     `json:"pre_attack_windows"`
	FalseAlarm int     `json:"false_alarms"`
	// FirstAlarm is the first attack window above the threshold, counted
	// from the attack's first window (0: that one); -1 when not caught.
	FirstAlarm int `json:"first_alarm_window"`
}

// CVEMethodEval is one method over every run.
type CVEMethodEval struct {
	Method      string            `json:"method"`
	Desc        string            `json:"desc"`
	Caught      int               `json:"runs_caught"`
	Runs        int               `json:"runs"`
	PreWindows  int               `json:"pre_attack_windows"`
	FalseAlarms int               `json:"false_alarms"`
	FARate      float64           `json:"false_alarm_rate"`
	PerCVE      map[string][2]int `json:"per_cve"` // caught, false alarms
	// TTDMedian and TTDMax are the median and largest FirstAlarm of the
	// caught runs, in 100 ms windows.
	TTDMedian  float64     `json:"ttd_median_windows"`
	TTDMax     int         `json:"ttd_max_windows"`
	Results    []CVEResult `json:"results"`
	CPUSeconds float64     `json:"cpu_seconds"`
}

// fileCache reads each CSV once.
type fileCache struct {
	mu sync.Mutex
	m  map[string]*fileEntry
}

type fileEntry struct {
	once  sync.Once
	units []detector.Unit
	err   error
}

func (c *fileCache) get(path string) ([]detector.Unit, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*fileEntry{}
	}
	e := c.m[path]
	if e == nil {
		e = &fileEntry{}
		c.m[path] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.units, e.err = readCountCSV(path)
	})
	return e.units, e.err
}

// CVEEval runs methods through the protocol, runs in parallel on par
// goroutines (0: GOMAXPROCS).
func CVEEval(d *CVEData, methods []Method, par int) ([]CVEMethodEval, error) {
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	fc := &fileCache{}
	out := make([]CVEMethodEval, len(methods))
	type job struct{ mi, ri int }
	res := make([][]CVEResult, len(methods))
	cpu := make([]float64, len(methods))
	for mi := range methods {
		res[mi] = make([]CVEResult, len(d.Runs))
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lockThread()
			for j := range jobs {
				t0 := threadCPU()
				r, err := cveRun(fc, d.Runs[j.ri], methods[j.mi])
				dt := threadCPU() - t0
				mu.Lock()
				cpu[j.mi] += dt
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				res[j.mi][j.ri] = r
			}
		}()
	}
	// read the files first (every method needs them), then run
	for _, r := range d.Runs {
		for _, p := range []string{r.Test, r.Train[0], r.Train[1], r.Calib} {
			if _, err := fc.get(p); err != nil {
				close(jobs)
				wg.Wait()
				return nil, err
			}
		}
	}
	for ri := range d.Runs {
		for mi := range methods {
			jobs <- job{mi, ri}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for mi, m := range methods {
		out[mi] = summarizeCVE(m, res[mi])
		out[mi].CPUSeconds = cpu[mi]
	}
	return out, nil
}

func summarizeCVE(m Method, rs []CVEResult) CVEMethodEval {
	e := CVEMethodEval{Method: m.Name, Desc: m.Desc, Results: rs, Runs: len(rs), PerCVE: map[string][2]int{}}
	for _, r := range rs {
		pc := e.PerCVE[r.CVE]
		if r.Caught {
			e.Caught++
			pc[0]++
		}
		pc[1] += r.FalseAlarm
		e.PerCVE[r.CVE] = pc
		e.PreWindows += r.PreWindows
		e.FalseAlarms += r.FalseAlarm
	}
	if e.PreWindows > 0 {
		e.FARate = float64(e.FalseAlarms) / float64(e.PreWindows)
	}
	var ttd []float64
	for _, r := range rs {
		if r.Caught {
			ttd = append(ttd, float64(r.FirstAlarm))
			e.TTDMax = max(e.TTDMax, r.FirstAlarm)
		}
	}
	if len(ttd) > 0 {
		sort.Float64s(ttd)
		e.TTDMedian = ttd[len(ttd)/2]
		if len(ttd)%2 == 0 {
			e.TTDMedian = (ttd[len(ttd)/2-1] + ttd[len(ttd)/2]) / 2
		}
	}
	return e
}

func cveRun(fc *fileCache, r CVERun, m Method) (CVEResult, error) {
	res := CVEResult{CVE: r.CVE, Run: r.Run, FirstAlarm: -1}
	var train [][]detector.Unit
	for _, p := range r.Train {
		u, err := fc.get(p)
		if err != nil {
			return res, err
		}
		train = append(train, u)
	}
	calib, err := fc.get(r.Calib)
	if err != nil {
		return res, err
	}
	test, err := fc.get(r.Test)
	if err != nil {
		return res, err
	}
	score, err := m.Fit(train)
	if err != nil {
		return res, fmt.Errorf("%s %s run %d: %w", m.Name, r.CVE, r.Run, err)
	}
	res.Threshold = math.Inf(-1)
	for _, s := range score(calib) {
		res.Threshold = math.Max(res.Threshold, s)
	}
	res.AttackMax = math.Inf(-1)
	for i, s := range score(test) {
		switch {
		case i < r.Start:
			res.PreWindows++
			if s > res.Threshold {
				res.FalseAlarm++
			}
		case i <= r.End:
			res.AttackMax = math.Max(res.AttackMax, s)
			if s > res.Threshold && !res.Caught {
				res.Caught = true
				res.FirstAlarm = i - r.Start
			}
		}
	}
	return res, nil
}

// LeaveOneCVEOut checks that a choice among variants generalizes: for each
// CVE, the variant with the most runs caught on the other CVEs (fewest
// false alarms on ties, then the first listed) is applied to the held-out
// CVE. It returns the held-out totals and the variant picked per CVE.
type LOCOResult struct {
	Caught      int               `json:"runs_caught"`
	Runs        int               `json:"runs"`
	FalseAlarms int               `json:"false_alarms"`
	PreWindows  int               `json:"pre_attack_windows"`
	FARate      float64           `json:"false_alarm_rate"`
	Picked      map[string]string `json:"picked"` // held-out CVE -> variant chosen on the other nine
	// Majority is the variant picked for the most held-out CVEs (the
	// first listed on ties): the one to use by default.
	Majority string `json:"majority_pick"`
}

// LeaveOneCVEOut picks, for each held-out CVE, the variant among evals
// that does best on the other CVEs (the most runs caught with a
// false-alarm rate at most maxFA, then the fewest false alarms) and sums
// that variant's results on the held-out CVE.
func LeaveOneCVEOut(cves []string, evals []CVEMethodEval, maxFA float64) LOCOResult {
	lo := LOCOResult{Picked: map[string]string{}}
	for _, held := range cves {
		best, bestC, bestF, bestOK := -1, -1, 0, false
		for i, e := range evals {
			c, f, n := 0, 0, 0
			for _, r := range e.Results {
				if r.CVE == held {
					continue
				}
				if r.Caught {
					c++
				}
				f += r.FalseAlarm
				n += r.PreWindows
			}
			ok := n == 0 || float64(f)/float64(n) <= maxFA
			if best < 0 || (ok && !bestOK) || (ok == bestOK && (c > bestC || (c == bestC && f < bestF))) {
				best, bestC, bestF, bestOK = i, c, f, ok
			}
		}
		lo.Picked[held] = evals[best].Method
		for _, r := range evals[best].Results {
			if r.CVE != held {
				continue
			}
			lo.Runs++
			if r.Caught {
				lo.Caught++
			}
			lo.FalseAlarms += r.FalseAlarm
			lo.PreWindows += r.PreWindows
		}
	}
	if lo.PreWindows > 0 {
		lo.FARate = float64(lo.FalseAlarms) / float64(lo.PreWindows)
	}
	votes := map[string]int{}
	for _, v := range lo.Picked {
		votes[v]++
	}
	for _, e := range evals {
		if votes[e.Method] > votes[lo.Majority] {
			lo.Majority = e.Method
		}
	}
	return lo
}

// CVETable is the readable form of a CVE evaluation.
func CVETable(evals []CVEMethodEval, cves []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s %7s %8s %9s %7s", "method", "caught", "FA", "FA rate", "TTD")
	for _, c := range cves {
		fmt.Fprintf(&b, " %9s", strings.TrimPrefix(c, "CVE-"))
	}
	b.WriteString("\n")
	for _, e := range evals {
		fmt.Fprintf(&b, "%-24s %4d/%-2d %8d %8.3f%% %3g/%-3d", e.Method, e.Caught, e.Runs, e.FalseAlarms, 100*e.FARate, e.TTDMedian, e.TTDMax)
		for _, c := range cves {
			pc := e.PerCVE[c]
			fmt.Fprintf(&b, " %5s", fmt.Sprintf("%d/%d", pc[0], CVERuns))
			fmt.Fprintf(&b, "%4d", pc[1])
		}
		b.WriteString("\n")
	}
	b.WriteString("(TTD: median/largest windows from the attack's first window to the first alarm, caught runs; per CVE: runs caught / 4 and false-alarm windows)\n")
	return b.String()
}

// ZScoreBaseline is the plain per-syscall z-score over log(1+count): a
// window's score is its largest deviation from the training mean in
// standard deviations; a syscall with no variance in training (one never
// seen, in particular) scores 1000 plus its difference when it deviates.
func ZScoreBaseline() Method {
	return Method{Name: "zscore", Desc: "per-syscall z-score over log(1+count), max over syscalls; unseen syscalls score high",
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			sum, sq := map[string]float64{}, map[string]float64{}
			n := 0.0
			for _, f := range train {
				for i := range f {
					n++
					for k, c := range f[i].Counts {
						x := math.Log1p(c)
						sum[k] += x
						sq[k] += x * x
					}
				}
			}
			mean, sd := map[string]float64{}, map[string]float64{}
			for k, s := range sum {
				mu := s / n
				mean[k] = mu
				sd[k] = math.Sqrt(math.Max(sq[k]/n-mu*mu, 0))
			}
			z := func(k string, x float64) float64 {
				d := math.Abs(x - mean[k])
				if s := sd[k]; s > 1e-12 {
					return d / s
				}
				if d < 1e-12 {
					return 0
				}
				return 1000 + d
			}
			return func(file []detector.Unit) []float64 {
				out := make([]float64, len(file))
				for i := range file {
					best := 0.0
					c := file[i].Counts
					for k := range mean { // absent syscalls: count 0
						if _, ok := c[k]; !ok {
							best = math.Max(best, z(k, 0))
						}
					}
					for k, v := range c {
						best = math.Max(best, z(k, math.Log1p(v)))
					}
					out[i] = best
				}
				return out
			}, nil
		}}
}

// STIDEBaseline adapts STIDE (n=6) to count windows: each window becomes a
// symbol, the set of syscalls it made (counts dropped), and the file the
// sequence of its windows' symbols. Training keeps every run of 6
// consecutive symbols; a window's score is the number of unseen 6-symbol
// runs among the last 20 ending at it (the locality frame count).
func STIDEBaseline() Method {
	const n, frame = 6, 20
	symbol := func(u *detector.Unit) string {
		keys := make([]string, 0, len(u.Counts))
		for k, c := range u.Counts {
			if c > 0 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	grams := func(file []detector.Unit, fn func(i int, key string)) {
		syms := make([]string, len(file))
		for i := range file {
			syms[i] = symbol(&file[i])
		}
		for i := range syms {
			lo := max(i-n+1, 0)
			fn(i, strings.Join(syms[lo:i+1], "\x00")+fmt.Sprint(i-lo))
		}
	}
	return Method{Name: "stide", Desc: "STIDE n=6 over windows as symbols (the set of syscalls made), locality frame 20",
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			seen := map[string]bool{}
			for _, f := range train {
				grams(f, func(_ int, k string) { seen[k] = true })
			}
			return func(file []detector.Unit) []float64 {
				out := make([]float64, len(file))
				mis := make([]int, len(file))
				cnt := 0
				grams(file, func(i int, k string) {
					if !seen[k] {
						mis[i] = 1
					}
					cnt += mis[i]
					if i >= frame {
						cnt -= mis[i-frame]
					}
					out[i] = float64(cnt)
				})
				return out
			}, nil
		}}
}

// ModelMethod is vigil's learned model with the given training options,
// on windows: a file's windows are scored as one stream (ScoreSeries).
func ModelMethod(name, desc string, opt detector.TrainOptions) Method {
	return modelMethod(name, desc, opt, "window", true)
}

// modelMethod trains the model on units of the given kind and scores a
// file's units as one stream (series) or each on its own.
func modelMethod(name, desc string, opt detector.TrainOptions, kind string, series bool) Method {
	return Method{Name: name, Desc: desc,
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			var units []detector.Unit
			for _, f := range train {
				units = append(units, f...)
			}
			o := opt
			o.UnitKind = kind
			m, err := detector.Train(units, o)
			if err != nil {
				return nil, err
			}
			return func(file []detector.Unit) []float64 {
				out := make([]float64, len(file))
				if series {
					for i, s := range m.ScoreSeries(file) {
						out[i] = s.Score
					}
					return out
				}
				for i := range file {
					out[i] = m.Score(&file[i]).Score
				}
				return out
			}, nil
		}}
}

// CVEReport is the CVE protocol's part of eval-report.json.
type CVEReport struct {
	Dataset string          `json:"dataset"`
	Runs    int             `json:"runs"`
	CVEs    []string        `json:"cves"`
	Methods []CVEMethodEval `json:"methods"`
	LOCO    *LOCOResult     `json:"leave_one_cve_out,omitempty"`
}

// EvaluateCVE runs the protocol on the data set for the model and both
// baselines (and variants, when given).
func EvaluateCVE(dataset string, variants []Method, log io.Writer) (*CVEReport, error) {
	d, err := LoadCVEData(dataset, CacheDir())
	if err != nil {
		return nil, err
	}
	methods := append([]Method{ModelMethod("model", "vigil detect: the learned model as trained by vigil detect train", defaultModelOptions()),
		ZScoreBaseline(), STIDEBaseline()}, variants...)
	evals, err := CVEEval(d, methods, 0)
	if err != nil {
		return nil, err
	}
	rep := &CVEReport{Dataset: dataset, Runs: len(d.Runs), CVEs: d.CVEs, Methods: evals}
	if len(variants) > 0 {
		var vs []CVEMethodEval
		for i := range variants {
			vs = append(vs, evals[3+i])
		}
		lo := LeaveOneCVEOut(d.CVEs, vs, 0.001)
		rep.LOCO = &lo
	}
	if log != nil {
		fmt.Fprint(log, CVETable(evals, d.CVEs))
		if rep.LOCO != nil {
			fmt.Fprint(log, LOCOTable(rep.LOCO, d.CVEs))
		}
	}
	return rep, nil
}

// ModelVariants are the model's variants compared side by side, each
// on the count component alone: how a syscall never seen in training
// counts (ranked above everything, or as a deviation with a standard
// deviation of 0.1 in log count), whether each syscall's deviations are
// scaled by its held-out spread between the two training files, whether
// a window's deviation is its largest or the sum beyond 5 or 10 standard
// deviations, and how many consecutive windows a deviation must last;
// per-syscall excess levels from the training files' held-out spread,
// capped at 10 or 20 (CountOptions.HeldOutExcess); then, on the sums
// beyond 5 and 10 standard deviations with one or two windows of
// context, how evidence accumulates across windows (a CUSUM
// with a drift of 1 or 5, or the sum of the last 3 or 5 windows; see
// detector.AccumOptions).
func ModelVariants() []Method {
	var out []Method
	for _, v := range modelVariantOptions() {
		out = append(out, ModelMethod(v.name, fmt.Sprintf("%+v", v.opt), v.opt))
	}
	return out
}

type modelVariant struct {
	name string
	opt  detector.TrainOptions
}

func modelVariantOptions() []modelVariant {
	var vs []modelVariant
	for _, novel := range []float64{0, 0.1} {
		for _, held := range []bool{false, true} {
			for _, ex := range []float64{0, 5, 10} {
				for _, ctx := range []int{1, 2} {
					o := detector.CountOptions{Features: detector.FeatSyscall, Floor: 1e-6, Tier: novel == 0, Novel: novel, HeldOut: held, Excess: ex}
					name := "z"
					if novel == 0 {
						name += "-tier"
					} else {
						name += fmt.Sprintf("-nov%g", novel)
					}
					if held {
						name += "-held"
					}
					if ex > 0 {
						name += fmt.Sprintf("-ex%g", ex)
					}
					if ctx > 1 {
						name += fmt.Sprintf("/ctx%d", ctx)
					}
					vs = append(vs, modelVariant{name, detector.TrainOptions{Components: []string{"count"}, Count: o, Context: ctx}})
				}
			}
		}
	}
	for _, ex := range []float64{10, 20} {
		for _, ctx := range []int{1, 2} {
			o := detector.CountOptions{Features: detector.FeatSyscall, Floor: 1e-6, Tier: true, Excess: ex, HeldOutExcess: true}
			name := fmt.Sprintf("z-tier-hex%g", ex)
			if ctx > 1 {
				name += fmt.Sprintf("/ctx%d", ctx)
			}
			vs = append(vs, modelVariant{name, detector.TrainOptions{Components: []string{"count"}, Count: o, Context: ctx}})
		}
	}
	for _, ex := range []float64{5, 10} {
		for _, ctx := range []int{1, 2} {
			for _, a := range accumVariants() {
				o := detector.CountOptions{Features: detector.FeatSyscall, Floor: 1e-6, Tier: true, Excess: ex}
				name := fmt.Sprintf("z-tier-ex%g", ex)
				if ctx > 1 {
					name += fmt.Sprintf("/ctx%d", ctx)
				}
				vs = append(vs, modelVariant{name + "/" + a.name, detector.TrainOptions{Components: []string{"count"}, Count: o, Context: ctx, Accum: a.opt}})
			}
		}
	}
	return vs
}

// accumVariant is a way of accumulating evidence across windows.
type accumVariant struct {
	name string
	opt  detector.AccumOptions
}

// accumVariants are the ways of accumulating evidence across windows
// that ModelVariants compares.
func accumVariants() []accumVariant {
	return []accumVariant{
		{"cusum1", detector.AccumOptions{Kind: detector.AccumCUSUM, Drift: 1}},
		{"cusum5", detector.AccumOptions{Kind: detector.AccumCUSUM, Drift: 5}},
		{"sum3", detector.AccumOptions{Kind: detector.AccumSum, N: 3}},
		{"sum5", detector.AccumOptions{Kind: detector.AccumSum, N: 5}},
	}
}

// SeqSTIDEBaseline is STIDE (n=6) on syscall sequences: training keeps
// every run of 6 consecutive syscalls of a thread (its window's prefix
// gives the context); a window's score is the largest fraction of unseen
// runs within a locality frame of 20 syscalls, over its threads.
func SeqSTIDEBaseline() Method {
	const n, frame = 6, 20
	each := func(u *detector.Unit, fn func(thread int, key string)) {
		for si, s := range u.Seqs {
			var ctx []string
			if si < len(u.Prefix) {
				ctx = u.Prefix[si]
			}
			all := append(append([]string(nil), ctx...), s...)
			for i := len(ctx); i < len(all); i++ {
				lo := max(i-n+1, 0)
				fn(si, strings.Join(all[lo:i+1], " "))
			}
		}
	}
	return Method{Name: "stide", Desc: "STIDE n=6 on per-thread syscall sequences, locality frame 20",
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			seen := map[string]bool{}
			for _, f := range train {
				for i := range f {
					each(&f[i], func(_ int, k string) { seen[k] = true })
				}
			}
			return func(file []detector.Unit) []float64 {
				out := make([]float64, len(file))
				for i := range file {
					var mis []int
					cur, cnt, best := -1, 0, 0
					each(&file[i], func(t int, k string) {
						if t != cur {
							cur, cnt, mis = t, 0, mis[:0]
						}
						m := 0
						if !seen[k] {
							m = 1
						}
						mis = append(mis, m)
						cnt += m
						if len(mis) > frame {
							cnt -= mis[len(mis)-1-frame]
						}
						best = max(best, cnt)
					})
					out[i] = float64(best) / frame
				}
				return out
			}, nil
		}}
}

// defaultModelOptions are the options vigil detect train uses.
func defaultModelOptions() detector.TrainOptions { return detector.TrainOptions{} }

// Sustained scores a window by the smallest score of the last k windows
// (ending at it): a deviation must last k windows.
func Sustained(m Method, k int) Method {
	return Method{Name: fmt.Sprintf("%s/min%d", m.Name, k), Desc: m.Desc + fmt.Sprintf(", smallest of the last %d windows", k),
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			score, err := m.Fit(train)
			if err != nil {
				return nil, err
			}
			return func(file []detector.Unit) []float64 {
				s := score(file)
				out := make([]float64, len(s))
				for i := range s {
					out[i] = s[i]
					for j := max(i-k+1, 0); j < i; j++ {
						out[i] = min(out[i], s[j])
					}
				}
				return out
			}, nil
		}}
}

// Smoothed scores a window by the mean score of the last k windows.
func Smoothed(m Method, k int) Method {
	return Method{Name: fmt.Sprintf("%s/mean%d", m.Name, k), Desc: m.Desc + fmt.Sprintf(", mean of the last %d windows", k),
		Fit: func(train [][]detector.Unit) (func([]detector.Unit) []float64, error) {
			score, err := m.Fit(train)
			if err != nil {
				return nil, err
			}
			return func(file []detector.Unit) []float64 {
				s := score(file)
				out := make([]float64, len(s))
				for i := range s {
					lo := max(i-k+1, 0)
					for j := lo; j <= i; j++ {
						out[i] += s[j]
					}
					out[i] /= float64(i - lo + 1)
				}
				return out
			}, nil
		}}
}

// readCountCSV reads a counts CSV as detector.ReadUnits does (the same
// units: syscall names cut at '[', zero counts left out), faster: most of
// the data set's fields are "0".
func readCountCSV(path string) ([]detector.Unit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cve data: %w", err)
	}
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	var names []string
	for _, h := range strings.Split(strings.TrimRight(string(lines[0]), "\r"), ",") {
		h = strings.TrimSpace(h)
		if i := strings.IndexByte(h, '['); i > 0 {
			h = h[:i]
		}
		names = append(names, h)
	}
	var units []detector.Unit
	for li, line := range lines[1:] {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		counts := map[string]float64{}
		col := 0
		for len(line) > 0 || col < len(names) {
			f := line
			if i := bytes.IndexByte(line, ','); i >= 0 {
				f, line = line[:i], line[i+1:]
			} else {
				line = nil
			}
			if col > 0 && !(len(f) == 1 && f[0] == '0') && len(f) > 0 {
				c, err := strconv.ParseFloat(string(f), 64)
				if err != nil || !(c >= 0) || math.IsInf(c, 1) {
					return nil, fmt.Errorf("%s:%d: column %d: %q is not a count", path, li+2, col+1, f)
				}
				if col >= len(names) {
					return nil, fmt.Errorf("%s:%d: more fields than the header's %d", path, li+2, len(names))
				}
				if c > 0 {
					counts[names[col]] += c
				}
			}
			col++
			if line == nil {
				break
			}
		}
		if col != len(names) {
			return nil, fmt.Errorf("%s:%d: %d fields, the header has %d", path, li+2, col, len(names))
		}
		units = append(units, detector.Unit{Source: path, Index: len(units), Counts: counts})
	}
	return units, nil
}

// LOCOTable is the readable form of a leave-one-CVE-out result.
func LOCOTable(lo *LOCOResult, cves []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "leave one CVE out (variant chosen on the other CVEs, applied to the held-out one): %d/%d runs caught, %d false alarms (%.3f%%); picked most often: %s\n",
		lo.Caught, lo.Runs, lo.FalseAlarms, 100*lo.FARate, lo.Majority)
	for _, c := range cves {
		fmt.Fprintf(&b, "  %s: %s\n", c, lo.Picked[c])
	}
	return b.String()
}
