package detector

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// ModelVersion is the file format version of Model. Version 1 files (no
// count component) are read too.
const ModelVersion = 2

// Model parameters. They are fixed (not tuned to any dataset): the classic
// values of the syscall anomaly-detection literature.
const (
	ngramOrder   = 6  // n-gram language model order (contexts of up to 5 syscalls)
	stideK       = 6  // STIDE sequence length
	frameLen     = 20 // locality frame for STIDE mismatch counts
	nllWindow    = 20 // sliding window for mean negative log-likelihood
	maxRefs      = 1000
	maxCalib     = 2000
	calibPct     = 0.95 // a component's normalizer: this quantile of held-out normal scores
	thresholdPct = 0.97 // the combined threshold: this quantile of held-out normal scores...
	thresholdMul = 1.02 // ...times this margin
	magWeight    = 0.05 // weight of |log volume difference| in the frequency distance
	minScoreLen  = 8    // units with fewer syscalls are not scored online
	maxContext   = 100  // the most windows Model.Context may span
)

// Unit is one thing the model scores: a trace (one or several syscall
// sequences, e.g. one per thread) and/or a window of per-syscall counts.
type Unit struct {
	Source string
	Index  int
	Seqs   [][]string         // syscall names in order, one slice per thread or trace
	Counts map[string]float64 // per-syscall counts; derived from Seqs when nil
	// Prefix holds, per sequence, the syscalls that came just before it in
	// the same thread (the end of the previous window): context for the
	// first n-grams, not scored. nil for traces that start at the start.
	Prefix [][]string
	// for the evidence of online verdicts
	first, last int64
}

func (u *Unit) counts() map[string]float64 {
	if u.Counts != nil {
		return u.Counts
	}
	m := map[string]float64{}
	for _, s := range u.Seqs {
		for _, n := range s {
			m[n]++
		}
	}
	return m
}

func (u *Unit) length() int {
	n := 0
	for _, s := range u.Seqs {
		n += len(s)
	}
	if n == 0 {
		for _, c := range u.Counts {
			n += int(c)
		}
	}
	return n
}

// Model is a learned model of one workload's normal behaviour: an n-gram
// language model with Witten-Bell smoothing, the set of seen syscall
// sequences (STIDE), and reference windows of per-syscall frequencies
// (tf-idf, cosine distance to the nearest). Each component's score is
// normalized by held-out normal scores (k-fold over the training units), and
// the combined score is their mean; Threshold is a high quantile of the
// held-out combined scores with a margin.
type Model struct {
	Version   int      `json:"version"`
	Name      string   `json:"name"`       // workload key (image/container) or what the user named it
	Vocab     []string `json:"vocab"`      // token id -> syscall name
	Units     int      `json:"units"`      // training units
	Syscalls  uint64   `json:"syscalls"`   // training syscalls
	UnitKind  string   `json:"unit_kind"`  // "trace", "window" (counts) or "events:N"
	WindowN   int      `json:"window_n"`   // events per window for event streams
	HasSeq    bool     `json:"has_seq"`    // trained on sequences (n-gram, STIDE)
	HasCounts bool     `json:"has_counts"` // trained on frequencies

	Unigram []uint64    `json:"unigram"` // count per token id (len Vocab)
	Grams   []gramEntry `json:"grams"`   // every seen sequence of 2..ngramOrder tokens (BOS-padded)
	IDF     []float64   `json:"idf"`     // per token id, plus one for unknown
	Refs    []refWindow `json:"refs"`    // reference frequency windows

	Count *countStats `json:"count,omitempty"` // count component (z-scores of count features)
	PCA   *pcaStats   `json:"pca,omitempty"`   // pca component (residual off the principal subspace)
	Use   int         `json:"use,omitempty"`   // components used, bit per component; 0: every one the data allows
	Max   bool        `json:"max,omitempty"`   // combine normalized components by their maximum, not their mean
	// Whole scores a unit's sequences as a whole, normalized by length:
	// the n-gram component is the mean negative log-likelihood of all its
	// syscalls and STIDE the share of unseen k-grams, instead of the worst
	// window of nllWindow syscalls and the worst locality frame.
	Whole bool `json:"whole,omitempty"`
	// Ranks holds, per component, held-out normal scores at evenly spaced
	// quantiles (0 to 1). When a component has them, it is normalized by
	// its rarity among them (rankNorm) instead of divided by Norm.
	Ranks [5][]float64 `json:"ranks,omitempty"`
	// Context is how many consecutive windows of one stream a deviation
	// must last: a window's score is the smallest score of the last
	// Context windows (ScoreSeries, and online per container). 0 or 1:
	// each window on its own.
	Context int `json:"context,omitempty"`
	// Accum accumulates evidence across consecutive windows of one
	// stream (after Context): nil, each window on its own.
	Accum *AccumOptions `json:"accum,omitempty"`

	Norm      [5]float64 `json:"norm"` // per component (ngram, stide, freq, count, pca): normalizer
	Threshold float64    `json:"threshold"`
	Calib     calibInfo  `json:"calibration"`

	stats   gramTable // built from Grams
	index   map[string]int
	classes []uint8 // syscall class per token id
}

type gramEntry struct {
	Toks  []uint16 `json:"t"`
	N     uint32   `json:"n"` // occurrences
	CtxN  uint32   `json:"c"` // occurrences followed by a token
	Types uint32   `json:"k"` // distinct tokens that followed
}

type gramStat struct {
	n, ctxN, types uint32
	// nll, for a gram of ngramOrder tokens when cached: the negative
	// log2-likelihood of its last token after the others (cacheNLL).
	nll    float64
	cached bool
}

// cacheNLL stores in every training gram of ngramOrder tokens the negative
// log-likelihood of its last token after the others, as prob gives it:
// scoring a syscall whose gram was seen in training (nearly all of normal
// traffic) then costs one map lookup instead of up to 2*(ngramOrder-1)
// and a logarithm. The model must be complete (counts and unigrams).
func (m *Model) cacheNLL(grams func(yield func(toks []uint16) bool)) {
	for t := range grams {
		if len(t) != ngramOrder {
			continue
		}
		h := hashToks(t)
		st := m.stats.at(h)
		st.nll = -math.Log2(m.prob(t[:ngramOrder-1], t[ngramOrder-1]))
		st.cached = true
		m.stats.set(h, st)
	}
}

// gramNLL is the negative log2-likelihood of buf[pos] after the tokens
// before it, and whether its gram of stideK tokens was seen in training.
func (m *Model) gramNLL(buf []uint16, pos int) (nll float64, seen bool) {
	st, ok := m.stats.get(hashToks(buf[pos-ngramOrder+1 : pos+1]))
	if ok && st.cached {
		nll = st.nll
	} else {
		nll = -math.Log2(m.prob(buf[pos-ngramOrder+1:pos], buf[pos]))
	}
	if stideK == ngramOrder {
		return nll, ok
	}
	seen = m.stats.has(hashToks(buf[pos-stideK+1 : pos+1]))
	return nll, seen
}

type refWindow struct {
	Idx   []uint16  `json:"i"` // token ids with a non-zero weight
	W     []float64 `json:"w"` // unit-normalized tf-idf weights
	LogTo float64   `json:"l"` // log1p of the total count
}

type calibInfo struct {
	Folds      int        `json:"folds"`
	HeldOut    int        `json:"held_out"`
	Quantiles  [5]float64 `json:"component_p95"`
	CombinedQ  float64    `json:"combined_quantile"`
	InSample   bool       `json:"in_sample"` // too few units for k-fold
	Components []string   `json:"components"`
}

// Component indexes.
const (
	compNgram = iota
	compStide
	compFreq
	compCount
	compPCA
)

var compNames = []string{"ngram", "stide", "freq", "count", "pca"}

// Scores is a unit's score: the combined score, the verdict, and the parts.
type Scores struct {
	Score     float64    `json:"score"`
	Anomalous bool       `json:"anomalous"`
	Parts     [5]float64 `json:"parts"` // raw ngram (max window mean bits), stide (max frame fraction), freq (distance), count (deviation in SDs), pca (residual)
	Worst     []string   `json:"-"`     // the worst NLL window, for evidence
}

func (m *Model) unk() uint16 { return uint16(len(m.Vocab)) }
func (m *Model) bos() uint16 { return uint16(len(m.Vocab) + 1) }

func (m *Model) tok(name string) uint16 {
	if i, ok := m.index[name]; ok {
		return uint16(i)
	}
	return m.unk()
}

func (m *Model) buildIndex() {
	m.index = make(map[string]int, len(m.Vocab))
	for i, n := range m.Vocab {
		m.index[n] = i
	}
	m.buildClasses()
	m.stats = gramTable{}
	m.stats.reserve(len(m.Grams))
	for _, g := range m.Grams {
		m.stats.set(hashToks(g.Toks), gramStat{n: g.N, ctxN: g.CtxN, types: g.Types})
	}
	m.cacheNLL(func(yield func([]uint16) bool) {
		for _, g := range m.Grams {
			if !yield(g.Toks) {
				return
			}
		}
	})
}

func hashToks(t []uint16) uint64 {
	h := uint64(14695981039346656037) ^ uint64(len(t))
	for _, x := range t {
		h ^= uint64(x) + 1
		h *= 1099511628211
		h ^= h >> 29
	}
	return h
}

// TrainOptions tunes Train.
type TrainOptions struct {
	Name     string
	UnitKind string
	WindowN  int
	// Components names the components to use (ngram, stide, freq, count);
	// nil: DefaultComponents, or for whole traces (TraceKind of UnitKind)
	// DefaultTraceComponents with Whole and Rank.
	Components []string
	Max        bool         // combine components by their maximum (default: the mean)
	Whole      bool         // Model.Whole: length-normalized scores of whole sequences
	Rank       bool         // normalize components by their rarity among held-out scores (Model.Ranks)
	Count      CountOptions // the count component's settings
	PCAVar     float64      // the pca component's variance explained; 0: default
	// NormQuantile is the quantile of held-out normal scores that
	// normalizes each component; 0: 0.95.
	NormQuantile float64
	// Context is Model.Context: how many consecutive windows a deviation
	// must last (0: DefaultContext for count windows, 1 otherwise).
	Context int
	// Accum is Model.Accum: how evidence accumulates across windows (the
	// zero value: it does not).
	Accum AccumOptions
}

// DefaultContext is the number of consecutive windows a count-window
// model's deviation must last unless told (TrainOptions.Context).
const DefaultContext = 2

// DefaultComponents are the components a model uses unless told, for
// data with sequences (event streams, traces): the n-gram model, STIDE,
// the tf-idf nearest-window distance and the count z-scores.
var DefaultComponents = []string{"ngram", "stide", "freq", "count"}

// DefaultCountComponents are the components for count windows (no order):
// the count z-scores alone. On the development CVE data, adding the tf-idf
// distance (freq) or the PCA residual (pca) catches no more runs, or one
// more, for more false alarms (the comparison is in test/scenarios,
// ModelVariants).
var DefaultCountComponents = []string{"count"}

// DefaultTraceComponents are the components for whole per-process traces
// (TraceKind): the n-gram model scored over the whole trace, normalized
// by its length (the mean negative log-likelihood: TrainOptions.Whole),
// and the tf-idf distance, each normalized by its rarity among held-out
// normal traces (TrainOptions.Rank), combined by their mean. On
// per-process traces of two scenario recordings (test/scenarios,
// TraceMethods: leaving one benign workload out), the event-window
// defaults (each sequence's worst 20-syscall window and locality frame,
// the count z-scores, each divided by its 95th percentile) separate
// attack processes from an unseen workload's worse than STIDE's share of
// unseen 6-grams (trace AUC 0.60 against 0.65); these do better than every
// STIDE variant on both (0.69), and adding STIDE's share of unseen
// 6-grams to them does not.
var DefaultTraceComponents = []string{"ngram", "freq"}

// TraceKind reports whether units of a kind (TrainOptions.UnitKind) are
// whole per-process traces: "trace", or "seq" (sequence trace files),
// alone or joined by "+" as vigil detect train names mixed inputs.
func TraceKind(kind string) bool {
	if kind == "" {
		return false
	}
	for _, k := range strings.Split(kind, "+") {
		if k != "trace" && k != "seq" {
			return false
		}
	}
	return true
}

func useMask(names []string, hasSeq bool) (int, error) {
	if names == nil {
		names = DefaultComponents
		if !hasSeq {
			names = DefaultCountComponents
		}
	}
	mask := 0
	for _, n := range names {
		i := -1
		for c, cn := range compNames {
			if cn == n {
				i = c
			}
		}
		if i < 0 {
			return 0, fmt.Errorf("train: component %q: unknown, use some of %s", n, strings.Join(compNames, ", "))
		}
		mask |= 1 << i
	}
	return mask, nil
}

// Train builds a model from normal units. It is deterministic: the same
// units in the same order give the same model.
func Train(units []Unit, opt TrainOptions) (*Model, error) {
	if len(units) == 0 {
		return nil, fmt.Errorf("train: no training data")
	}
	vocabSet := map[string]bool{}
	hasSeq, hasCounts := false, false
	for i := range units {
		if len(units[i].Seqs) > 0 {
			hasSeq = true
		}
		for n, c := range units[i].counts() {
			if c > 0 {
				vocabSet[n] = true
				hasCounts = true
			}
		}
	}
	if len(vocabSet) == 0 {
		return nil, fmt.Errorf("train: the training data holds no syscalls")
	}
	if len(vocabSet) > 60000 {
		return nil, fmt.Errorf("train: %d distinct syscall names, more than a model holds (60000)", len(vocabSet))
	}
	vocab := make([]string, 0, len(vocabSet))
	for n := range vocabSet {
		vocab = append(vocab, n)
	}
	sort.Strings(vocab)
	if opt.Components == nil && TraceKind(opt.UnitKind) {
		// whole traces: their own defaults (DefaultTraceComponents)
		opt.Components, opt.Whole, opt.Rank = DefaultTraceComponents, true, true
	}
	use, err := useMask(opt.Components, hasSeq)
	if err != nil {
		return nil, err
	}
	if err := opt.Accum.check(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if !hasSeq && opt.Count == (CountOptions{}) {
		opt.Count = WindowCountOptions
	}
	full := fit(units, vocab, hasSeq, hasCounts, use, opt)
	if len(full.components()) == 0 {
		names := opt.Components
		if names == nil {
			names = DefaultCountComponents
		}
		return nil, fmt.Errorf("train: none of the components %s applies to this data (sequences: %v, counts: %v)", strings.Join(names, ", "), hasSeq, hasCounts)
	}

	// Calibrate on held-out folds: train on k-1 contiguous folds, score the
	// held-out one, so normal scores are those of unseen normal data.
	var held [][5]float64
	var heldIdx []int // the unit of each held-out score
	idxs := calibIndices(len(units))
	folds := 5
	if len(units) < folds {
		folds = len(units)
	}
	inSample := folds < 2
	if inSample {
		for _, i := range idxs {
			held = append(held, full.raw(&units[0]))
			heldIdx = append(heldIdx, i)
		}
	} else {
		// Fold f holds blocks of consecutive units, dealt round-robin: every
		// fold sees every kind of normal behaviour in the training set, and
		// neighbours (adjacent windows of one stream) mostly share a fold,
		// so held-out scores are not flattered by their twins.
		block := min(max(len(units)/(folds*20), 1), 10)
		fold := func(i int) int { return (i / block) % folds }
		for f := 0; f < folds; f++ {
			train := make([]Unit, 0, len(units))
			for i := range units {
				if fold(i) != f {
					train = append(train, units[i])
				}
			}
			fm := fit(train, vocab, hasSeq, hasCounts, use, opt)
			for _, i := range idxs {
				if fold(i) == f {
					held = append(held, fm.raw(&units[i]))
					heldIdx = append(heldIdx, i)
				}
			}
		}
	}
	comps := full.components()
	for _, c := range comps {
		vals := make([]float64, len(held))
		for i, h := range held {
			vals[i] = h[c]
		}
		nq := calibPct
		if opt.NormQuantile > 0 {
			nq = opt.NormQuantile
		}
		q := quantile(vals, nq)
		full.Calib.Quantiles[c] = q
		full.Norm[c] = math.Max(q, floorNorm[c])
		if opt.Rank {
			full.Ranks[c] = rankPoints(vals)
		}
	}
	full.Calib.HeldOut = len(held)
	comb := make([]float64, len(held))
	for i, h := range held {
		comb[i] = full.combine(h)
	}
	if full.Accum != nil {
		// accumulated scores: the quantile of the held-out scores taken
		// as series (in training order, one per source)
		comb = full.heldOutSeries(units, heldIdx, comb)
	}
	full.Calib.CombinedQ = quantile(comb, thresholdPct)
	margin := thresholdMul
	if inSample {
		margin = 1.5
	}
	full.Threshold = math.Max(full.Calib.CombinedQ*margin, 0.5)
	full.Calib.Folds = folds
	full.Calib.InSample = inSample
	for _, c := range comps {
		full.Calib.Components = append(full.Calib.Components, compNames[c])
	}
	return full, nil
}

// floorNorm keeps a normalizer from being zero when every held-out normal
// unit scored 0 on a component (all its sequences seen before).
var floorNorm = [5]float64{0.5, 1.0 / frameLen, 0.01, 1, 1}

func calibIndices(n int) []int {
	var out []int
	step := 1
	if n > maxCalib {
		step = (n + maxCalib - 1) / maxCalib
	}
	for i := 0; i < n; i += step {
		out = append(out, i)
	}
	return out
}

func (m *Model) components() []int {
	var c []int
	use := func(i int) bool { return m.Use == 0 || m.Use&(1<<i) != 0 }
	if m.HasSeq {
		for _, i := range []int{compNgram, compStide} {
			if use(i) {
				c = append(c, i)
			}
		}
	}
	if m.HasCounts && use(compFreq) {
		c = append(c, compFreq)
	}
	if m.HasCounts && m.Count != nil && use(compCount) {
		c = append(c, compCount)
	}
	if m.HasCounts && m.PCA != nil && use(compPCA) {
		c = append(c, compPCA)
	}
	return c
}

// fit builds the statistics of a model from units (no calibration).
func fit(units []Unit, vocab []string, hasSeq, hasCounts bool, use int, opt TrainOptions) *Model {
	m := &Model{Version: ModelVersion, Name: opt.Name, Vocab: vocab, Units: len(units),
		UnitKind: opt.UnitKind, WindowN: opt.WindowN, HasSeq: hasSeq, HasCounts: hasCounts, Use: use, Max: opt.Max,
		Whole: opt.Whole, Context: opt.Context}
	if m.Context == 0 && !hasSeq {
		m.Context = DefaultContext
	}
	if m.Context < 1 {
		m.Context = 1
	}
	if opt.Accum.Kind != "" {
		a := opt.Accum.withDefaults()
		m.Accum = &a
	}
	m.index = make(map[string]int, len(vocab))
	for i, n := range vocab {
		m.index[n] = i
	}
	m.buildClasses()
	m.Unigram = make([]uint64, len(vocab))
	m.stats = gramTable{}
	gramToks := map[uint64][]uint16{}
	var buf []uint16
	for ui := range units {
		for si, s := range units[ui].Seqs {
			buf = m.tokens(buf[:0], units[ui].prefix(si), s)
			for i := ngramOrder - 1; i < len(buf); i++ {
				m.Unigram[buf[i]]++
				m.Syscalls++
				for n := 2; n <= ngramOrder; n++ {
					g := buf[i-n+1 : i+1]
					h := hashToks(g)
					st := m.stats.at(h)
					if st.n == 0 {
						gramToks[h] = append([]uint16(nil), g...)
						ch := hashToks(g[:n-1])
						cs := m.stats.at(ch)
						cs.types++
						m.stats.set(ch, cs)
						if _, ok := gramToks[ch]; !ok {
							gramToks[ch] = append([]uint16(nil), g[:n-1]...)
						}
					}
					st.n++
					m.stats.set(h, st)
					ch := hashToks(g[:n-1])
					cs := m.stats.at(ch)
					cs.ctxN++
					m.stats.set(ch, cs)
				}
			}
		}
		if len(units[ui].Seqs) == 0 {
			for n, c := range units[ui].Counts {
				if i, ok := m.index[n]; ok {
					m.Syscalls += uint64(c)
					m.Unigram[i] += uint64(c)
				}
			}
		}
	}
	m.cacheNLL(func(yield func([]uint16) bool) {
		for _, t := range gramToks {
			if !yield(t) {
				return
			}
		}
	})
	// grams, sorted for a deterministic file
	m.Grams = make([]gramEntry, 0, len(gramToks))
	for h, t := range gramToks {
		st := m.stats.at(h)
		m.Grams = append(m.Grams, gramEntry{Toks: t, N: st.n, CtxN: st.ctxN, Types: st.types})
	}
	sort.Slice(m.Grams, func(i, j int) bool { return lessToks(m.Grams[i].Toks, m.Grams[j].Toks) })
	// frequency windows: idf over units, then reference vectors
	df := make([]float64, len(vocab)+1)
	for ui := range units {
		for n, c := range units[ui].counts() {
			if i, ok := m.index[n]; ok && c > 0 {
				df[i]++
			}
		}
	}
	m.IDF = make([]float64, len(vocab)+1)
	for i := range m.IDF {
		m.IDF[i] = math.Log(1 + float64(len(units))/(df[i]+0.5))
	}
	seen := map[string]bool{}
	var refs []refWindow
	for ui := range units {
		if use&(1<<compFreq) == 0 {
			break // no reference windows without the freq component
		}
		r := m.vector(units[ui].counts())
		key := fmt.Sprint(r.Idx, r.W, r.LogTo)
		if seen[key] {
			continue
		}
		seen[key] = true
		refs = append(refs, r)
	}
	if len(refs) > maxRefs {
		picked := make([]refWindow, 0, maxRefs)
		for i := 0; i < maxRefs; i++ {
			picked = append(picked, refs[i*len(refs)/maxRefs])
		}
		refs = picked
	}
	m.Refs = refs
	if hasCounts && use&(1<<compCount) != 0 {
		m.Count = m.fitCounts(units, opt.Count)
	}
	if hasCounts && use&(1<<compPCA) != 0 {
		m.PCA = m.fitPCA(units, opt.PCAVar)
	}
	return m
}

func lessToks(a, b []uint16) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// tokens maps names to ids behind ngramOrder-1 tokens of context: the
// prefix (the thread's preceding syscalls), padded in front with BOS.
func (m *Model) tokens(buf []uint16, prefix, names []string) []uint16 {
	if len(prefix) > ngramOrder-1 {
		prefix = prefix[len(prefix)-(ngramOrder-1):]
	}
	for i := len(prefix); i < ngramOrder-1; i++ {
		buf = append(buf, m.bos())
	}
	for _, n := range prefix {
		buf = append(buf, m.tok(n))
	}
	for _, n := range names {
		buf = append(buf, m.tok(n))
	}
	return buf
}

// countVec is a window's per-syscall counts by vocabulary id, and those
// of syscalls outside the vocabulary by name.
type countVec struct {
	known   []float64 // per vocabulary id
	unknown []nameCount
}

type nameCount struct {
	name string
	n    float64
}

// countVec files counts under vocabulary ids.
func (m *Model) countVec(counts map[string]float64) *countVec {
	cv := &countVec{known: make([]float64, len(m.Vocab))}
	for n, c := range counts {
		if i, ok := m.index[n]; ok {
			cv.known[i] = c
		} else {
			cv.unknown = append(cv.unknown, nameCount{n, c})
		}
	}
	return cv
}

// vector is the tf-idf vector of counts, unit-normalized, sparse.
func (m *Model) vector(counts map[string]float64) refWindow {
	return m.vectorOf(m.countVec(counts))
}

func (m *Model) vectorOf(cv *countVec) refWindow {
	var r refWindow
	total := 0.0
	for id, c := range cv.known {
		if c > 0 {
			total += c
			r.Idx = append(r.Idx, uint16(id))
		}
	}
	unk := 0.0
	for _, x := range cv.unknown {
		if x.n > 0 {
			total += x.n
			unk += x.n
		}
	}
	if unk > 0 {
		r.Idx = append(r.Idx, m.unk()) // after every vocabulary id
	}
	count := func(id uint16) float64 {
		if id == m.unk() {
			return unk
		}
		return cv.known[id]
	}
	norm := 0.0
	for _, id := range r.Idx {
		w := (1 + math.Log(count(id))) * m.IDF[id]
		r.W = append(r.W, w)
		norm += w * w
	}
	norm = math.Sqrt(norm)
	for i := range r.W {
		if norm > 0 {
			r.W[i] /= norm
		}
	}
	r.LogTo = math.Log1p(total)
	return r
}

// prob is P(tok | ctx) under interpolated Witten-Bell smoothing; ctx holds
// up to ngramOrder-1 tokens (most recent last).
func (m *Model) prob(ctx []uint16, tok uint16) float64 {
	var c uint64
	if int(tok) < len(m.Unigram) {
		c = m.Unigram[tok]
	}
	p := (float64(c) + 1) / (float64(m.Syscalls) + float64(len(m.Vocab)) + 1)
	var g [ngramOrder]uint16
	for k := 1; k <= len(ctx); k++ {
		cx := ctx[len(ctx)-k:]
		cs, ok := m.stats.get(hashToks(cx))
		if !ok || cs.ctxN == 0 {
			break
		}
		copy(g[:], cx)
		g[k] = tok
		gs := m.stats.at(hashToks(g[:k+1]))
		p = (float64(gs.n) + float64(cs.types)*p) / (float64(cs.ctxN) + float64(cs.types))
	}
	return p
}

// raw scores a unit's components without normalization.
func (m *Model) raw(u *Unit) [5]float64 {
	s, _ := m.rawWorst(u, false)
	return s
}

func (m *Model) rawWorst(u *Unit, wantWorst bool) ([5]float64, []string) {
	var sc scoreScratch
	var out [5]float64
	var worst []string
	if m.HasSeq && len(u.Seqs) > 0 {
		ws := m.seqParts(&out, len(u.Seqs), func(i int, buf []uint16) []uint16 {
			if len(u.Seqs[i]) == 0 {
				return nil
			}
			return m.tokens(buf, u.prefix(i), u.Seqs[i])
		}, &sc)
		if wantWorst && ws.ok {
			worst = u.Seqs[ws.seq][ws.from:ws.to]
		}
	}
	if m.HasCounts {
		m.countParts(&out, m.countVec(u.counts()), &sc)
	}
	return out, worst
}

// scoreScratch holds a scorer's buffers, reused from window to window.
type scoreScratch struct {
	buf   []uint16
	nll   []float64
	mis   []uint8
	dense []float64
	cv    countVec
}

// worstSpan is where the worst NLL window is: sequence seq, syscalls
// [from, to).
type worstSpan struct {
	seq, from, to int
	ok            bool
}

// seqParts sets the n-gram and STIDE components of n sequences; seq(i,
// buf) appends sequence i's tokens, led by ngramOrder-1 tokens of context,
// to buf[:0] (nil: an empty sequence).
func (m *Model) seqParts(out *[5]float64, n int, seq func(i int, buf []uint16) []uint16, sc *scoreScratch) worstSpan {
	var ws worstSpan
	best := -1.0
	maxFrame := 0.0
	var sumNLL float64
	var nMis, nAll int
	for si := 0; si < n; si++ {
		buf := seq(si, sc.buf[:0])
		if buf == nil {
			continue
		}
		sc.buf = buf
		body := buf[ngramOrder-1:]
		sc.nll = slices.Grow(sc.nll[:0], len(body))[:len(body)]
		sc.mis = slices.Grow(sc.mis[:0], len(body))[:len(body)]
		nll, mis := sc.nll, sc.mis
		for i := range body {
			pos := i + ngramOrder - 1
			var seen bool
			nll[i], seen = m.gramNLL(buf, pos)
			mis[i] = 0
			if !seen {
				mis[i] = 1
				nMis++
			}
			sumNLL += nll[i]
		}
		nAll += len(body)
		// max mean NLL over sliding windows (the whole sequence if shorter)
		w := nllWindow
		if len(nll) < w {
			w = len(nll)
		}
		sum := 0.0
		for i, v := range nll {
			sum += v
			if i >= w {
				sum -= nll[i-w]
			}
			if i >= w-1 {
				if mean := sum / float64(w); mean > best {
					best = mean
					ws = worstSpan{seq: si, from: i - w + 1, to: i + 1, ok: true}
				}
			}
		}
		// STIDE: max mismatches within a locality frame
		cnt := 0
		for i := range mis {
			cnt += int(mis[i])
			if i >= frameLen {
				cnt -= int(mis[i-frameLen])
			}
			if f := float64(cnt) / frameLen; f > maxFrame {
				maxFrame = f
			}
		}
	}
	if best < 0 {
		best = 0
	}
	out[compNgram], out[compStide] = best, maxFrame
	if m.Whole && nAll > 0 {
		out[compNgram], out[compStide] = sumNLL/float64(nAll), float64(nMis)/float64(nAll)
	}
	return ws
}

// countParts sets the components of the per-syscall counts.
func (m *Model) countParts(out *[5]float64, cv *countVec, sc *scoreScratch) {
	if m.Use == 0 || m.Use&(1<<compFreq) != 0 {
		out[compFreq] = m.freqDistanceOf(cv, sc)
	}
	if m.Count != nil && (m.Use == 0 || m.Use&(1<<compCount) != 0) {
		out[compCount] = m.countScoreOf(cv)
	}
	if m.PCA != nil && (m.Use == 0 || m.Use&(1<<compPCA) != 0) {
		out[compPCA] = m.pcaScoreOf(cv)
	}
}

// freqDistanceOf is the distance of a window to its nearest reference:
// cosine distance of the tf-idf vectors plus magWeight times the difference
// of log volumes.
func (m *Model) freqDistanceOf(cv *countVec, sc *scoreScratch) float64 {
	if len(m.Refs) == 0 {
		return 0
	}
	q := m.vectorOf(cv)
	if len(q.Idx) == 0 {
		return 0
	}
	sc.dense = slices.Grow(sc.dense[:0], len(m.Vocab)+2)[:len(m.Vocab)+2]
	dense := sc.dense
	clear(dense)
	for i, id := range q.Idx {
		dense[id] = q.W[i]
	}
	best := math.Inf(1)
	for ri := range m.Refs {
		r := &m.Refs[ri]
		dot := 0.0
		for i, id := range r.Idx {
			dot += dense[id] * r.W[i]
		}
		d := 1 - dot + magWeight*math.Abs(q.LogTo-r.LogTo)
		if d < best {
			best = d
		}
	}
	if best < 0 {
		best = 0
	}
	return best
}

func (m *Model) combine(raw [5]float64) float64 {
	comps := m.components()
	if len(comps) == 0 {
		return 0
	}
	s := 0.0
	for _, c := range comps {
		v := m.norm(c, raw[c])
		if m.Max {
			s = math.Max(s, v)
			continue
		}
		s += v
	}
	if m.Max {
		return s
	}
	return s / float64(len(comps))
}

// rankCount is how many quantiles of held-out scores Model.Ranks keeps
// per component.
const rankCount = 101

// rankPoints are the quantiles 0, 1/(rankCount-1), ..., 1 of vals.
func rankPoints(vals []float64) []float64 {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	out := make([]float64, rankCount)
	for i := range out {
		out[i] = quantile(s, float64(i)/(rankCount-1))
	}
	return out
}

// norm is a component's normalized score: its raw score over Norm, or,
// with Ranks, its rarity among held-out normal scores: -ln of the share
// of them at or above it (0 for the most common scores, about 3 at the
// 95th percentile), and beyond the largest, the rarity of the largest
// plus the excess over Norm, so scores keep their order.
func (m *Model) norm(c int, x float64) float64 {
	q := m.Ranks[c]
	if len(q) < 2 {
		return x / m.Norm[c]
	}
	pmin := 1 / float64(m.Calib.HeldOut+1)
	top := q[len(q)-1]
	if x > top {
		return -math.Log(pmin) + (x-top)/m.Norm[c]
	}
	i := sort.SearchFloat64s(q, x) // q[i-1] < x <= q[i]
	pos := 0.0
	if i > 0 {
		pos = float64(i-1) + (x-q[i-1])/(q[i]-q[i-1])
	}
	return -math.Log(math.Max(1-pos/float64(len(q)-1), pmin))
}

// Score scores one unit: the combined score (about 1 for typical normal
// units, above Threshold for anomalies) and its parts.
func (m *Model) Score(u *Unit) Scores {
	raw, worst := m.rawWorst(u, true)
	s := m.combine(raw)
	return Scores{Score: s, Anomalous: s > m.Threshold, Parts: raw, Worst: worst}
}

// ScoreSeries scores consecutive windows of one stream in order: each
// window's score is the smallest of the last Context windows' scores (the
// window's own when Context is 1), so a deviation must last Context
// windows, then accumulated over windows when Accum says so; Parts and
// Worst stay the window's own.
func (m *Model) ScoreSeries(units []Unit) []Scores {
	out := make([]Scores, len(units))
	var st seriesState
	for i := range units {
		out[i] = m.next(&st, m.Score(&units[i]))
	}
	return out
}

// seriesState is what scoring one stream's windows in order remembers:
// the last scores (Context) and the accumulated evidence (Accum).
type seriesState struct {
	recent contextScores
	acc    accumulator
}

// next turns a window's own scores into its score in the stream.
func (m *Model) next(st *seriesState, s Scores) Scores {
	s.Score = m.seriesScore(st, s.Score)
	s.Anomalous = s.Score > m.Threshold
	return s
}

func (m *Model) seriesScore(st *seriesState, s float64) float64 {
	s = st.recent.push(s, m.Context)
	if m.Accum != nil {
		s = st.acc.push(s, *m.Accum)
	}
	return s
}

// heldOutSeries runs the held-out combined scores comb (comb[k] the
// score of units[idxs[k]]) through Context and Accum in training order as
// streams, a new one at each change of source, and returns the series'
// scores in training order.
func (m *Model) heldOutSeries(units []Unit, idxs []int, comb []float64) []float64 {
	order := make([]int, len(idxs))
	for k := range order {
		order[k] = k
	}
	sort.SliceStable(order, func(a, b int) bool { return idxs[order[a]] < idxs[order[b]] })
	out := make([]float64, 0, len(comb))
	var st seriesState
	for j, k := range order {
		if j > 0 && units[idxs[k]].Source != units[idxs[order[j-1]]].Source {
			st = seriesState{}
		}
		out = append(out, m.seriesScore(&st, comb[k]))
	}
	return out
}

// Kinds of AccumOptions.
const (
	AccumCUSUM = "cusum" // S = max(0, S + x - Drift): a one-sided CUSUM
	AccumSum   = "sum"   // the sum of the last N windows' x
)

// AccumOptions say how a model accumulates evidence across consecutive
// windows of one stream: each window adds x, its score (after Context)
// capped at Cap, and the stream's score is the larger of the window's
// score and the accumulated evidence, so a window that stands out alone
// still does, and small deviations that persist add up. The zero value
// accumulates nothing.
//
// Models accumulate nothing unless told: on the development CVE data
// (test/scenarios, ModelVariants) no CUSUM or sliding sum over the
// window's deviation beyond 5 or 10 standard deviations, with one or two
// windows of context, catches more runs at no more false alarms than two
// consecutive windows alone (DefaultContext), all CVEs at once or leaving
// one out.
//
// An exponentially forgetting sum (an EWMA) is left out on purpose: its
// evidence never returns to zero after a deviation, so where normal data
// scores 0 (a threshold of 0) it keeps alarming long after one stray
// window; on the development CVE data it raised 3.6 to 7.6% false-alarm
// windows.
type AccumOptions struct {
	Kind  string  `json:"kind"`            // AccumCUSUM or AccumSum; "": none
	Drift float64 `json:"drift,omitempty"` // cusum: the evidence a window must exceed to add (the reference value k)
	N     int     `json:"n,omitempty"`     // sum: windows summed
	Cap   float64 `json:"cap,omitempty"`   // the most one window adds; 0: DefaultAccumCap
}

// DefaultAccumCap is the most one window adds to accumulated evidence
// unless told (in units of the model's score, about 1 for a typical
// normal window): a window with a syscall never seen in training scores
// far above it and stands out on its own, without lingering.
const DefaultAccumCap = 20

// maxAccumN bounds AccumOptions.N (the windows a stream remembers).
const maxAccumN = 100

func (o AccumOptions) withDefaults() AccumOptions {
	if o.Cap <= 0 {
		o.Cap = DefaultAccumCap
	}
	return o
}

func (o AccumOptions) check() error {
	switch o.Kind {
	case "":
		return nil
	case AccumCUSUM:
		if !(o.Drift >= 0) || math.IsInf(o.Drift, 1) {
			return fmt.Errorf("accumulation: cusum drift %v, want a finite value >= 0", o.Drift)
		}
	case AccumSum:
		if o.N < 1 || o.N > maxAccumN {
			return fmt.Errorf("accumulation: sum over %d windows, want 1..%d", o.N, maxAccumN)
		}
	default:
		return fmt.Errorf("accumulation: kind %q unknown, use %s or %s", o.Kind, AccumCUSUM, AccumSum)
	}
	if o.Cap < 0 || math.IsNaN(o.Cap) || math.IsInf(o.Cap, 1) {
		return fmt.Errorf("accumulation: cap %v, want a finite value >= 0", o.Cap)
	}
	return nil
}

// accumulator is one stream's accumulated evidence.
type accumulator struct {
	s    float64   // cusum: the evidence; sum: the sum of last
	last []float64 // sum: the last N windows' capped scores
	next int       // sum: where the next goes in last
}

// push adds a window's score x and returns the stream's score: the
// larger of x and the evidence accumulated up to and with this window.
func (a *accumulator) push(x float64, o AccumOptions) float64 {
	c := math.Min(math.Max(x, 0), o.Cap)
	switch o.Kind {
	case AccumCUSUM:
		a.s = math.Max(0, a.s+c-o.Drift)
	case AccumSum:
		if len(a.last) < o.N {
			a.last = append(a.last, c)
		} else {
			a.last[a.next] = c
			a.next = (a.next + 1) % o.N
		}
		// summed afresh: no rounding drift over long streams
		a.s = 0
		for _, v := range a.last {
			a.s += v
		}
	default:
		return x
	}
	return math.Max(x, a.s)
}

// contextScores holds the last scores of one stream.
type contextScores struct{ last []float64 }

// push adds a window's score and returns the smallest of the last n
// (fewer at the start of the stream).
func (c *contextScores) push(s float64, n int) float64 {
	if n <= 1 {
		return s
	}
	if len(c.last) >= n {
		copy(c.last, c.last[len(c.last)-n+1:])
		c.last = c.last[:n-1]
	}
	c.last = append(c.last, s)
	lo := s
	for _, x := range c.last {
		lo = math.Min(lo, x)
	}
	return lo
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Save writes the model as gzip-compressed JSON. The bytes depend only on
// the model.
func (m *Model) Save(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	bw := bufio.NewWriter(zw)
	if err := json.NewEncoder(bw).Encode(m); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// SaveFile writes the model to path.
func (m *Model) SaveFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := m.Save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadModel reads a model written by Save.
func ReadModel(r io.Reader) (*Model, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read model: not a vigil model file (%w)", err)
	}
	var m Model
	if err := json.NewDecoder(zr).Decode(&m); err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	if m.Version != ModelVersion && m.Version != 1 {
		return nil, fmt.Errorf("read model: version %d, this vigil reads version %d", m.Version, ModelVersion)
	}
	if len(m.Unigram) != len(m.Vocab) || len(m.IDF) != len(m.Vocab)+1 {
		return nil, fmt.Errorf("read model: inconsistent sizes (vocab %d, unigram %d, idf %d)", len(m.Vocab), len(m.Unigram), len(m.IDF))
	}
	for _, r := range m.Refs {
		if len(r.Idx) != len(r.W) {
			return nil, fmt.Errorf("read model: reference window with %d ids and %d weights", len(r.Idx), len(r.W))
		}
		for _, id := range r.Idx {
			if int(id) > len(m.Vocab) {
				return nil, fmt.Errorf("read model: reference window names token %d of %d", id, len(m.Vocab))
			}
		}
	}
	if c := m.Count; c != nil {
		v, k := len(m.Vocab), len(syscallClasses)
		if len(c.Mean) != v || len(c.SD) != v || len(c.RelMean) != v || len(c.RelSD) != v || len(c.ClsMean) != k || len(c.ClsSD) != k {
			return nil, fmt.Errorf("read model: count statistics of %d syscalls and %d classes for a vocabulary of %d and %d classes", len(c.Mean), len(c.ClsMean), v, k)
		}
		c.Opt = c.Opt.withDefaults()
		if c.Scale != nil && len(c.Scale) != v {
			return nil, fmt.Errorf("read model: count scales of %d syscalls for a vocabulary of %d", len(c.Scale), v)
		}
		for _, x := range c.Scale {
			if !(x >= 1) || math.IsInf(x, 1) {
				return nil, fmt.Errorf("read model: count statistics hold a held-out scale of %v, want >= 1", x)
			}
		}
		if c.Excess != nil && len(c.Excess) != v {
			return nil, fmt.Errorf("read model: count excess levels of %d syscalls for a vocabulary of %d", len(c.Excess), v)
		}
		for _, x := range c.Excess {
			if !(x > 0) || math.IsInf(x, 1) {
				return nil, fmt.Errorf("read model: count statistics hold an excess level of %v, want a finite value > 0", x)
			}
		}
		for _, sds := range [][]float64{c.SD, c.RelSD, c.ClsSD, {c.TotSD}} {
			for _, x := range sds {
				if !(x > 0) || math.IsInf(x, 1) {
					return nil, fmt.Errorf("read model: count statistics hold a standard deviation of %v, want > 0", x)
				}
			}
		}
	}
	if p := m.PCA; p != nil {
		v := len(m.Vocab)
		if len(p.Mean) != v || len(p.SD) != v {
			return nil, fmt.Errorf("read model: pca statistics of %d syscalls for a vocabulary of %d", len(p.Mean), v)
		}
		for _, x := range p.SD {
			if !(x > 0) || math.IsInf(x, 1) {
				return nil, fmt.Errorf("read model: pca statistics hold a standard deviation of %v, want > 0", x)
			}
		}
		for _, d := range p.Comp {
			if len(d) != v {
				return nil, fmt.Errorf("read model: a principal component of %d syscalls for a vocabulary of %d", len(d), v)
			}
		}
	}
	for c, q := range m.Ranks {
		if len(q) == 1 || !sort.Float64sAreSorted(q) {
			return nil, fmt.Errorf("read model: %s ranks: %d held-out scores, want none or at least 2 in ascending order", compNames[c], len(q))
		}
		for _, x := range q {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("read model: %s ranks hold %v, want finite scores", compNames[c], x)
			}
		}
	}
	if m.Context < 0 || m.Context > maxContext {
		return nil, fmt.Errorf("read model: context of %d windows, want 0..%d", m.Context, maxContext)
	}
	if a := m.Accum; a != nil {
		if err := a.check(); err != nil {
			return nil, fmt.Errorf("read model: %w", err)
		}
		if a.Kind == "" || a.Cap <= 0 {
			return nil, fmt.Errorf("read model: accumulation of kind %q with cap %v, want a kind and a cap > 0", a.Kind, a.Cap)
		}
	}
	for c := range m.Norm {
		if m.Norm[c] <= 0 {
			m.Norm[c] = floorNorm[c]
		}
	}
	m.buildIndex()
	return &m, nil
}

// LoadModel reads a model file.
func LoadModel(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	return ReadModel(f)
}

// Summary is what `vigil detect inspect` prints.
func (m *Model) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model %q (format v%d)\n", m.Name, m.Version)
	fmt.Fprintf(&b, "trained on %d %s units, %d syscalls, %d distinct syscalls\n", m.Units, m.UnitKind, m.Syscalls, len(m.Vocab))
	fmt.Fprintf(&b, "components: %s\n", strings.Join(m.Calib.Components, ", "))
	if m.HasSeq {
		fmt.Fprintf(&b, "n-gram order %d (Witten-Bell), %d distinct 2..%d-grams; STIDE k=%d, frame %d\n", ngramOrder, len(m.Grams), ngramOrder, stideK, frameLen)
	}
	if m.HasCounts && len(m.Refs) > 0 {
		fmt.Fprintf(&b, "frequency: %d reference windows (tf-idf, cosine + %.2f*|log volume|)\n", len(m.Refs), magWeight)
	}
	if c := m.Count; c != nil {
		fmt.Fprintf(&b, "count z-scores: features %#x, SD floors %.3g (log count) %.3g (relative), top %d\n", c.Opt.Features, c.Opt.Floor, c.Opt.RelFloor, c.Opt.Top)
		if c.Excess != nil {
			fmt.Fprintf(&b, "count excess: per syscall, %g x its held-out deviation, %g..%g SD\n", float64(HeldOutMargin), float64(HeldOutFloor), c.Opt.Excess)
		} else if c.Opt.Excess > 0 {
			fmt.Fprintf(&b, "count excess: beyond %g SD\n", c.Opt.Excess)
		}
	}
	if p := m.PCA; p != nil {
		fmt.Fprintf(&b, "pca: %d principal components (%.0f%% of the variance)\n", len(p.Comp), 100*p.Var)
	}
	comb := "mean"
	if m.Max {
		comb = "max"
	}
	if m.Whole {
		fmt.Fprintf(&b, "sequences scored whole: mean NLL, share of unseen %d-grams\n", stideK)
	}
	for c, q := range m.Ranks {
		if len(q) > 0 {
			comb += ", " + compNames[c] + " rank-normalized"
		}
	}
	if m.Context > 1 {
		fmt.Fprintf(&b, "context: a deviation must last %d windows\n", m.Context)
	}
	if a := m.Accum; a != nil {
		fmt.Fprintf(&b, "accumulation across windows: %s (drift %g, n %d, cap %g per window)\n", a.Kind, a.Drift, a.N, a.Cap)
	}
	fmt.Fprintf(&b, "calibration: %d folds, %d held-out units; normalizers ngram %.3g, stide %.3g, freq %.3g, count %.3g, pca %.3g; combined by %s; threshold %.3f (held-out quantile %.3f)\n",
		m.Calib.Folds, m.Calib.HeldOut, m.Norm[0], m.Norm[1], m.Norm[2], m.Norm[3], m.Norm[4], comb, m.Threshold, m.Calib.CombinedQ)
	type kv struct {
		n string
		c uint64
	}
	var top []kv
	for i, n := range m.Vocab {
		top = append(top, kv{n, m.Unigram[i]})
	}
	sort.SliceStable(top, func(i, j int) bool { return top[i].c > top[j].c })
	if len(top) > 10 {
		top = top[:10]
	}
	var parts []string
	for _, t := range top {
		parts = append(parts, fmt.Sprintf("%s %d", t.n, t.c))
	}
	fmt.Fprintf(&b, "most frequent: %s\n", strings.Join(parts, ", "))
	return b.String()
}

func (u *Unit) prefix(i int) []string {
	if i < len(u.Prefix) {
		return u.Prefix[i]
	}
	return nil
}

// Len is the number of syscalls in the unit.
func (u *Unit) Len() int { return u.length() }
